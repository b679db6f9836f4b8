//! Plain-text tables for terminal output: the first column is a left-aligned label, the
//! others are right-aligned values, so numbers line up for comparison.

#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Table {
    header: Option<Vec<String>>,
    rows: Vec<Vec<String>>,
    values_left: bool,
}

const GAP: &str = "  ";

impl Table {
    pub fn new() -> Self {
        Self::default()
    }

    pub fn with_header<S: Into<String>>(header: impl IntoIterator<Item = S>) -> Self {
        Self {
            header: Some(header.into_iter().map(Into::into).collect()),
            ..Self::default()
        }
    }

    /// Left-aligns the values too: for key/value listings, where values are text, not figures.
    pub fn values_left(mut self) -> Self {
        self.values_left = true;
        self
    }

    pub fn row<S: Into<String>>(&mut self, cells: impl IntoIterator<Item = S>) -> &mut Self {
        self.rows.push(cells.into_iter().map(Into::into).collect());
        self
    }

    /// Renders with a rule under the header; rows shorter than the widest are padded with
    /// empty cells. Each line ends with a newline and carries no trailing spaces.
    pub fn render(&self) -> String {
        let all_rows = || self.header.iter().chain(self.rows.iter());
        let columns = all_rows().map(Vec::len).max().unwrap_or(0);
        let mut widths = vec![0; columns];
        for row in all_rows() {
            for (i, cell) in row.iter().enumerate() {
                widths[i] = widths[i].max(cell.chars().count());
            }
        }
        let mut out = String::new();
        if let Some(header) = &self.header {
            out.push_str(&line(header, &widths, self.values_left));
            let total = widths.iter().sum::<usize>() + GAP.len() * columns.saturating_sub(1);
            out.push_str(&"-".repeat(total));
            out.push('\n');
        }
        for row in &self.rows {
            out.push_str(&line(row, &widths, self.values_left));
        }
        out
    }
}

fn line(row: &[String], widths: &[usize], values_left: bool) -> String {
    let empty = String::new();
    let cells: Vec<String> = widths
        .iter()
        .enumerate()
        .map(|(i, &width)| {
            let cell = row.get(i).unwrap_or(&empty);
            if i == 0 || values_left {
                format!("{cell:<width$}")
            } else {
                format!("{cell:>width$}")
            }
        })
        .collect();
    let mut text = cells.join(GAP).trim_end().to_string();
    text.push('\n');
    text
}

/// Milliseconds as a short human figure: `850 ms`, `2.9 s`, `14 min`.
pub fn duration_ms(ms: u64) -> String {
    match ms {
        0..1_000 => format!("{ms} ms"),
        1_000..10_000 => format!("{:.1} s", ms as f64 / 1000.0),
        10_000..120_000 => format!("{:.0} s", ms as f64 / 1000.0),
        120_000..7_200_000 => format!("{:.0} min", ms as f64 / 60_000.0),
        _ => format!("{:.1} h", ms as f64 / 3_600_000.0),
    }
}

/// `12/20 (60%)`, or `-` when nothing was counted.
pub fn ratio(part: usize, whole: usize) -> String {
    if whole == 0 {
        return "-".to_string();
    }
    format!("{part}/{whole} ({:.0}%)", part as f64 * 100.0 / whole as f64)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn labels_align_left_and_values_align_right_under_a_rule() {
        let mut table = Table::with_header(["", "without", "with"]);
        table.row(["p50", "2900", "210"]).row(["warm hits", "0", "20"]);
        assert_eq!(
            table.render(),
            "           without  with\n\
             ------------------------\n\
             p50           2900   210\n\
             warm hits        0    20\n"
        );
    }

    #[test]
    fn short_rows_are_padded_and_lines_have_no_trailing_spaces() {
        let mut table = Table::new();
        table.row(["a", "1", "2"]).row(["longer label"]);
        let rendered = table.render();
        assert_eq!(rendered, "a             1  2\nlonger label\n");
        assert!(rendered.lines().all(|l| !l.ends_with(' ')));
    }

    #[test]
    fn a_key_value_listing_aligns_values_left() {
        let mut table = Table::new().values_left();
        table.row(["source", "pool"]).row(["claim latency", "41 ms"]);
        assert_eq!(table.render(), "source         pool\nclaim latency  41 ms\n");
    }

    #[test]
    fn an_empty_table_renders_nothing() {
        assert_eq!(Table::new().render(), "");
    }

    #[test]
    fn wide_characters_are_counted_as_one_column_each() {
        let mut table = Table::new();
        table.row(["µs", "1"]).row(["ms", "22"]);
        assert_eq!(table.render(), "µs   1\nms  22\n");
    }

    #[test]
    fn durations_pick_a_readable_unit() {
        assert_eq!(duration_ms(850), "850 ms");
        assert_eq!(duration_ms(2_940), "2.9 s");
        assert_eq!(duration_ms(95_400), "95 s");
        assert_eq!(duration_ms(840_000), "14 min");
        assert_eq!(duration_ms(28_800_000), "8.0 h");
    }

    #[test]
    fn ratios_show_count_and_percentage_and_a_dash_for_nothing() {
        assert_eq!(ratio(19, 20), "19/20 (95%)");
        assert_eq!(ratio(0, 0), "-");
    }
}
