//! How a command prints its result: a table or a few lines for people (`--output text`, the
//! default), or one JSON document for scripts (`--output json`). Only the result goes to
//! stdout; notes, progress and logs go to stderr, so stdout stays parseable in both formats.

use crate::error::CliError;
use serde::Serialize;
use std::io::Write;

#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, clap::ValueEnum)]
pub enum Format {
    #[default]
    Text,
    Json,
}

/// The `--output` flag, flattened into every command that prints a result.
#[derive(Debug, Clone, Copy, Default, clap::Args)]
pub struct OutputArgs {
    /// Print the result as `text` (for people) or as one `json` document (for scripts).
    #[arg(long, value_enum, default_value_t = Format::Text)]
    pub output: Format,
}

impl OutputArgs {
    pub fn is_json(self) -> bool {
        self.output == Format::Json
    }

    /// Prints `value` as JSON, or the text `render` makes, on stdout. A reader that closed
    /// its end early (`| head -1`) took what it wanted: that is no failure. Any other write
    /// error is, since the result did not arrive.
    pub fn print<T: Serialize>(self, value: &T, render: impl FnOnce() -> String) -> Result<(), CliError> {
        let text = self.render(value, render);
        let mut stdout = std::io::stdout().lock();
        match stdout.write_all(text.as_bytes()).and_then(|()| stdout.flush()) {
            Err(error) if error.kind() != std::io::ErrorKind::BrokenPipe => Err(CliError::Write {
                path: "stdout".to_string(),
                source: error,
            }),
            _ => Ok(()),
        }
    }

    /// What [`Self::print`] prints; every form ends with a newline.
    pub fn render<T: Serialize>(self, value: &T, render: impl FnOnce() -> String) -> String {
        let mut text = match self.output {
            Format::Json => to_json(value),
            Format::Text => render(),
        };
        if !text.ends_with('\n') {
            text.push('\n');
        }
        text
    }
}

/// Pretty JSON. The result types hold only strings, numbers, options, lists and maps with
/// string keys, for which serializing cannot fail.
pub fn to_json<T: Serialize>(value: &T) -> String {
    serde_json::to_string_pretty(value).unwrap_or_default()
}

/// Bytes an agent or a document holds, for a JSON result: the JSON itself when they are
/// JSON, else the text (invalid UTF-8 replaced).
pub fn embedded(bytes: &[u8]) -> serde_json::Value {
    serde_json::from_slice(bytes)
        .unwrap_or_else(|_| serde_json::Value::String(String::from_utf8_lossy(bytes).into_owned()))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn json_output_is_one_parseable_document_ending_in_a_newline() {
        let args = OutputArgs { output: Format::Json };
        let text = args.render(&serde_json::json!({"queueUrl": "http://q"}), || unreachable!());
        assert!(text.ends_with("}\n"), "{text}");
        let parsed: serde_json::Value = serde_json::from_str(&text).unwrap();
        assert_eq!(parsed["queueUrl"], "http://q");
    }

    #[test]
    fn text_output_is_the_rendering_with_a_final_newline() {
        let args = OutputArgs::default();
        assert_eq!(args.render(&(), || "http://q".to_string()), "http://q\n");
        assert_eq!(args.render(&(), || "a\nb\n".to_string()), "a\nb\n");
    }

    #[test]
    fn embedded_bytes_stay_json_when_they_are_and_become_text_otherwise() {
        assert_eq!(embedded(br#"{"echo":1}"#), serde_json::json!({"echo": 1}));
        assert_eq!(embedded(b"plain words"), serde_json::json!("plain words"));
    }
}
