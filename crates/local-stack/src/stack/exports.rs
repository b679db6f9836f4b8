//! What a running stack tells a shell: one `export NAME=value` line per endpoint and resource,
//! so that `. PATH` points the CLI, the SDKs and the AWS CLI at it.

use super::LocalStack;
use crate::error::Error;
use std::path::Path;

#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Exports(pub Vec<(String, String)>);

impl Exports {
    pub fn of(stack: &LocalStack) -> Self {
        let pool = &stack.pool;
        let mut vars = crate::sdk::base_env();
        let mut add = |name: &str, value: &str| vars.push((name.to_string(), value.to_string()));
        add("AWS_ENDPOINT_URL_SQS", &stack.moto_url);
        add("AWS_ENDPOINT_URL_LAMBDA", &pool.lambda_url);
        add("AWS_ENDPOINT_URL_BEDROCK_AGENTCORE", &pool.emulator_url);
        add("AGENTCORE_EMULATOR_URL", &pool.emulator_url);
        add("AGENT_RUNTIME_ARN", &pool.runtime_arn);
        add("POOL_QUEUE_URL", &pool.queue_url);
        if let Some(table) = &pool.lease_table {
            add("LEASE_TABLE_NAME", table);
        }
        if pool.lease_table.is_some() || stack.batches.is_some() {
            add("AWS_ENDPOINT_URL_DYNAMODB", &stack.moto_url);
        }
        if let Some(batches) = &stack.batches {
            add("AWS_ENDPOINT_URL_S3", &stack.moto_url);
            add("S3_FORCE_PATH_STYLE", "true");
            for (name, value) in batches.resources.env_pairs() {
                add(&name, &value);
            }
            add("BATCH_POOL_QUEUE_URL", &batches.pool_queue_url);
            add("BATCH_AGENT_RUNTIME_ARN", &batches.runtime_arn);
            add("BATCH_AGENTCORE_EMULATOR_URL", &batches.emulator_url);
            add("BATCH_LAMBDA_URL", &batches.lambda_url);
            add("DOCUMENT_AGENT_URL", &batches.agent_url);
        }
        Self(vars)
    }

    pub fn get(&self, name: &str) -> Option<&str> {
        self.0.iter().find(|(k, _)| k == name).map(|(_, v)| v.as_str())
    }

    /// `export NAME=value` lines, values quoted for a POSIX shell where they need it.
    pub fn render(&self) -> String {
        self.0
            .iter()
            .map(|(name, value)| format!("export {name}={}\n", shell_quote(value)))
            .collect()
    }

    /// Reads back what [`Exports::render`] wrote.
    pub fn parse(text: &str) -> Self {
        let vars = text
            .lines()
            .filter_map(|line| {
                let (name, value) = line.strip_prefix("export ")?.split_once('=')?;
                let value = value
                    .strip_prefix('\'')
                    .and_then(|v| v.strip_suffix('\''))
                    .map_or_else(|| value.to_string(), |v| v.replace(r"'\''", "'"));
                Some((name.to_string(), value))
            })
            .collect();
        Self(vars)
    }

    /// Writes the lines to `path` at once (a reader polling for the file never sees half).
    pub fn write(&self, path: &Path) -> Result<(), Error> {
        let partial = path.with_extension("partial");
        let fail = |source| Error::Write {
            path: path.to_path_buf(),
            source,
        };
        if let Some(parent) = path.parent().filter(|p| !p.as_os_str().is_empty()) {
            std::fs::create_dir_all(parent).map_err(fail)?;
        }
        std::fs::write(&partial, self.render()).map_err(fail)?;
        std::fs::rename(&partial, path).map_err(fail)
    }
}

fn shell_quote(value: &str) -> String {
    let plain = !value.is_empty()
        && value
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || b"_-./:@%+,=".contains(&b));
    if plain {
        value.to_string()
    } else {
        format!("'{}'", value.replace('\'', r"'\''"))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn exports_read_back_what_they_wrote_quoted_or_not() {
        let exports = Exports(vec![
            (
                "POOL_QUEUE_URL".into(),
                "http://127.0.0.1:5000/123456789012/pool.fifo".into(),
            ),
            ("ODD".into(), "it's a value with spaces".into()),
            ("EMPTY".into(), String::new()),
        ]);
        let text = exports.render();
        assert!(
            text.starts_with("export POOL_QUEUE_URL=http://127.0.0.1:5000/"),
            "{text}"
        );
        assert!(text.contains("export ODD='it'\\''s a value with spaces'"), "{text}");
        assert_eq!(Exports::parse(&text), exports);
    }
}
