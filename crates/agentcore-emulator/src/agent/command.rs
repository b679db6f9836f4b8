//! The agent command of the per-session-process mode: how `--agent-command` is read and how one
//! session's process is launched from it.

use std::process::Stdio;

use crate::Error;

/// Placeholder in the command's arguments for the session's port.
const PORT_PLACEHOLDER: &str = "{port}";
/// The environment variable carrying the session's port to the agent.
pub const PORT_ENV: &str = "AGENT_PORT";

/// A program and its arguments. Each session's process gets its port both as `AGENT_PORT` and
/// in place of every `{port}` in the arguments.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct AgentCommand {
    pub program: String,
    pub args: Vec<String>,
}

impl AgentCommand {
    pub fn new(program: impl Into<String>, args: impl IntoIterator<Item = impl Into<String>>) -> Self {
        Self {
            program: program.into(),
            args: args.into_iter().map(Into::into).collect(),
        }
    }

    /// Splits a command line the way a POSIX shell splits words, without expanding anything:
    /// blanks separate words, single quotes are literal, double quotes allow `\"` and `\\`,
    /// and a backslash outside quotes escapes the next character.
    pub fn parse(line: &str) -> Result<Self, Error> {
        let invalid = |reason: &str| Error::InvalidAgentCommand {
            command: line.to_owned(),
            reason: reason.to_owned(),
        };
        let mut words = split_words(line).map_err(invalid)?.into_iter();
        let program = words.next().ok_or_else(|| invalid("the command is empty"))?;
        Ok(Self {
            program,
            args: words.collect(),
        })
    }

    /// The process for one session. It leads a process group of its own, so that stopping the
    /// session can stop everything it started; its output is piped to the emulator's log.
    pub(super) fn command(&self, port: u16) -> tokio::process::Command {
        let port = port.to_string();
        let mut command = tokio::process::Command::new(&self.program);
        command
            .args(self.args.iter().map(|arg| arg.replace(PORT_PLACEHOLDER, &port)))
            .env(PORT_ENV, &port)
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .kill_on_drop(true);
        #[cfg(unix)]
        command.process_group(0);
        command
    }
}

fn split_words(line: &str) -> Result<Vec<String>, &'static str> {
    let mut words = Vec::new();
    let mut word: Option<String> = None;
    let mut chars = line.chars();
    while let Some(c) = chars.next() {
        match c {
            c if c.is_whitespace() => words.extend(word.take()),
            '\'' => {
                let current = word.get_or_insert_with(String::new);
                loop {
                    match chars.next() {
                        Some('\'') => break,
                        Some(c) => current.push(c),
                        None => return Err("unterminated single quote"),
                    }
                }
            }
            '"' => {
                let current = word.get_or_insert_with(String::new);
                loop {
                    match chars.next() {
                        Some('"') => break,
                        Some('\\') => match chars.next() {
                            Some(c @ ('"' | '\\')) => current.push(c),
                            Some(c) => {
                                current.push('\\');
                                current.push(c);
                            }
                            None => return Err("unterminated double quote"),
                        },
                        Some(c) => current.push(c),
                        None => return Err("unterminated double quote"),
                    }
                }
            }
            '\\' => {
                let escaped = chars.next().ok_or("a trailing backslash escapes nothing")?;
                word.get_or_insert_with(String::new).push(escaped);
            }
            c => word.get_or_insert_with(String::new).push(c),
        }
    }
    words.extend(word);
    Ok(words)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn command_lines_split_like_a_shell_without_expansion() {
        let parsed = AgentCommand::parse(r#"  python3 'my agent.py' --name "a \"b\"" x\ y $HOME '' "#).unwrap();
        assert_eq!(parsed.program, "python3");
        assert_eq!(parsed.args, ["my agent.py", "--name", r#"a "b""#, "x y", "$HOME", ""]);
    }

    #[test]
    fn broken_command_lines_are_refused_with_a_reason() {
        for bad in ["", "   ", "python 'open", "python \"open", "python \\"] {
            let err = AgentCommand::parse(bad).unwrap_err();
            assert!(matches!(err, Error::InvalidAgentCommand { .. }), "{bad:?}: {err}");
        }
    }

    #[test]
    fn the_port_replaces_every_placeholder_and_is_in_the_environment() {
        let command = AgentCommand::new("agent", ["--port={port}", "{port}{port}", "plain"]).command(4242);
        let std = command.as_std();
        let args: Vec<_> = std.get_args().map(|a| a.to_string_lossy().into_owned()).collect();
        assert_eq!(args, ["--port=4242", "42424242", "plain"]);
        let env: Vec<_> = std.get_envs().collect();
        assert!(
            env.iter()
                .any(|(k, v)| *k == PORT_ENV && v.is_some_and(|v| v == "4242"))
        );
    }
}
