//! The agent's reasons for giving an attempt up travel into the row's `lastError` (a DynamoDB
//! item holds 400 KB in all) and from there into the failure notice (an SQS message holds
//! 256 KiB). A processor or an S3 error can say anything at any length, so reasons are
//! bounded before they leave the agent.

/// The longest reason the agent writes, in bytes, marker included.
pub const MAX_REASON_BYTES: usize = 1_000;

/// `text` if it fits in `max_bytes`; else its start, cut on a character boundary, and a
/// marker saying how long it was. The result fits in `max_bytes` whenever the marker does.
pub fn bounded(text: &str, max_bytes: usize) -> String {
    if text.len() <= max_bytes {
        return text.to_string();
    }
    let marker = format!(" ... [truncated, {} bytes in all]", text.len());
    let mut cut = max_bytes.saturating_sub(marker.len());
    while !text.is_char_boundary(cut) {
        cut -= 1;
    }
    format!("{}{marker}", &text[..cut])
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_short_reason_is_kept_as_it_is() {
        assert_eq!(bounded("not found", 100), "not found");
        assert_eq!(bounded(&"x".repeat(100), 100), "x".repeat(100));
    }

    #[test]
    fn a_long_reason_is_cut_on_a_character_boundary_and_marked() {
        for text in ["é".repeat(5_000), "a".repeat(5_000), "x€".repeat(3_000)] {
            let cut = bounded(&text, 100);
            assert!(cut.len() <= 100, "{} bytes", cut.len());
            assert!(
                cut.ends_with(&format!("[truncated, {} bytes in all]", text.len())),
                "{cut}"
            );
            let kept = cut.split(" ... [truncated").next().unwrap();
            assert!(text.starts_with(kept) && !kept.is_empty(), "{cut}");
        }
    }

    #[test]
    fn a_bound_smaller_than_the_marker_still_returns_the_marker() {
        assert!(bounded(&"x".repeat(50), 5).starts_with(" ... [truncated, 50"));
    }
}
