//! The recommendation as the deploy command: `make deploy-pool` with `POOL_SHARE` (its
//! creation budget, which `warmpool pools check` weighs against the account's quota),
//! `ACCOUNT_QUOTA`, and `DEPLOY_ARGS='--parameter-overrides ...'` for `sam deploy`.
//!
//! Three readers parse the line in turn: the user's shell (the double-quoted `DEPLOY_ARGS`),
//! the recipe's shell (make pastes the text in unquoted, so each override is single-quoted
//! there), and SAM, which splits its overrides at spaces unless a value is double-quoted. A
//! value with a space or a `;` (a schedule) is therefore written `'Key="value"'` inside the
//! double quotes, its own double quotes escaped.

/// `Key=Value` as SAM must receive it, quoted where the value needs it.
fn sam_pair(name: &str, value: &str) -> String {
    if value
        .chars()
        .any(|c| c.is_whitespace() || matches!(c, ';' | '"' | '\''))
    {
        format!("{name}=\"{value}\"")
    } else {
        format!("{name}={value}")
    }
}

/// The `--parameter-overrides` value as `sam deploy` reads it (for a samconfig file or a
/// direct `sam deploy`).
pub fn parameter_overrides(parameters: &[(&'static str, String)]) -> String {
    parameters
        .iter()
        .map(|(name, value)| sam_pair(name, value))
        .collect::<Vec<_>>()
        .join(" ")
}

/// The whole `make deploy-pool` line for a POSIX shell.
pub fn deploy_command(parameters: &[(&'static str, String)], budget: u32, quota: u32) -> String {
    let overrides: Vec<String> = parameters
        .iter()
        .map(|(name, value)| {
            let pair = sam_pair(name, value);
            let quoted = if pair.contains(['"', ' ', ';', '*']) {
                format!("'{pair}'")
            } else {
                pair
            };
            // Inside the user's double quotes: `"`, `\`, `$` and `` ` `` are escaped.
            quoted
                .chars()
                .flat_map(|c| match c {
                    '"' | '\\' | '$' | '`' => vec!['\\', c],
                    c => vec![c],
                })
                .collect()
        })
        .collect();
    format!(
        "make deploy-pool POOL_SHARE={budget} ACCOUNT_QUOTA={quota} DEPLOY_ARGS=\"--parameter-overrides {}\"",
        overrides.join(" ")
    )
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::process::Command;

    fn parameters() -> Vec<(&'static str, String)> {
        vec![
            ("PoolTargetMode", "scheduled".into()),
            ("PoolTarget", "17".into()),
            (
                "PoolTargetSchedule",
                "Mon,Tue 11:20-13:00=19000; * 08:59-12:00=92".into(),
            ),
            ("CreationBudgetPerSec", "20".into()),
        ]
    }

    /// SAM's reading of one override argument: `Key=Value` or `Key="Value"`.
    fn sam_reads(argument: &str) -> (String, String) {
        let (key, value) = argument.split_once('=').unwrap();
        let value = value
            .strip_prefix('"')
            .and_then(|v| v.strip_suffix('"'))
            .unwrap_or(value);
        assert!(
            !value.contains(' ') || argument.contains('"'),
            "SAM would split {argument:?}"
        );
        (key.to_string(), value.to_string())
    }

    #[test]
    fn the_deploy_command_reaches_sam_with_each_value_whole() {
        let line = deploy_command(&parameters(), 20, 25);
        assert!(
            line.starts_with("make deploy-pool POOL_SHARE=20 ACCOUNT_QUOTA=25 DEPLOY_ARGS=\""),
            "{line}"
        );
        let assignment = line.split_once(" DEPLOY_ARGS=").unwrap().1;
        // The user's shell sets the variable; the recipe's shell splits what make pasted.
        let script = format!("DEPLOY_ARGS={assignment}; eval \"set -- $DEPLOY_ARGS\"; printf '%s\\n' \"$@\"");
        let out = Command::new("sh").arg("-c").arg(&script).output().unwrap();
        let argv: Vec<String> = String::from_utf8(out.stdout)
            .unwrap()
            .lines()
            .map(String::from)
            .collect();
        assert_eq!(argv[0], "--parameter-overrides", "{argv:?}");
        let read: Vec<(String, String)> = argv[1..].iter().map(|a| sam_reads(a)).collect();
        let expected: Vec<(String, String)> = parameters().into_iter().map(|(k, v)| (k.to_string(), v)).collect();
        assert_eq!(read, expected);
        assert_eq!(
            parameter_overrides(&parameters()),
            "PoolTargetMode=scheduled PoolTarget=17 PoolTargetSchedule=\"Mon,Tue 11:20-13:00=19000; * 08:59-12:00=92\" CreationBudgetPerSec=20"
        );
    }
}
