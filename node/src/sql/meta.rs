//! The shell's meta-commands: a line starting with `.` (duckdb's, sqlite's) or `\` (psql's).

use std::path::PathBuf;

use anyhow::bail;

use crate::cli::OutputFormat;

/// One meta-command.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) enum Meta {
    /// `.quit`, `.exit`, `\q`.
    Quit,
    /// `.tables`, `\dt`: every table and view.
    Tables,
    /// `.schema [NAME]`, `\d [NAME]`: the columns of one table, or of all.
    Schema(Option<String>),
    /// `.help`, `\?`.
    Help,
    /// `.timer on|off`.
    Timer(bool),
    /// `.mode table|csv|json`.
    Mode(OutputFormat),
    /// `.output FILE`, or `.output` alone: back to standard output.
    Output(Option<PathBuf>),
}

/// What `.help` prints.
pub(crate) const HELP: &str = "\
Statements end with ';' and may span lines. Meta-commands start a line:
  .tables, \\dt              list tables and views (a node's as catalog.schema.table)
  .schema [NAME], \\d [NAME] the columns and types of a table (qualified or not), or of all
  .mode table|csv|json      how results are written
  .output FILE              write results to FILE; .output alone: back to standard output
  .timer on|off             print the run time after each statement
  .help, \\?                 this help
  .quit, \\q                 leave (also in the middle of a statement)
Ctrl-C cancels the running query; at the prompt it clears the line.
COPY (SELECT ...) TO 'file' STORED AS parquet|csv|json|arrow writes an answer to a file.";

/// Parses a meta-command line (trimmed, starting with `.` or `\`).
pub(crate) fn parse(line: &str) -> anyhow::Result<Meta> {
    let mut words = line.split_whitespace();
    let command = words.next().unwrap_or_default();
    let argument = words.next();
    if let Some(extra) = words.next() {
        bail!("{command} takes at most one argument; '{extra}' is one too many");
    }
    let no_argument = |meta: Meta| match argument {
        Some(argument) => bail!("{command} takes no argument, got '{argument}'"),
        None => Ok(meta),
    };
    match command {
        ".quit" | ".exit" | "\\q" => no_argument(Meta::Quit),
        ".tables" | "\\dt" => no_argument(Meta::Tables),
        ".help" | "\\?" | "\\h" => no_argument(Meta::Help),
        ".schema" | "\\d" => Ok(Meta::Schema(argument.map(str::to_string))),
        ".timer" => match argument {
            Some("on") => Ok(Meta::Timer(true)),
            Some("off") => Ok(Meta::Timer(false)),
            _ => bail!(".timer takes on or off"),
        },
        ".mode" => match argument {
            Some("table") => Ok(Meta::Mode(OutputFormat::Table)),
            Some("csv") => Ok(Meta::Mode(OutputFormat::Csv)),
            Some("json") => Ok(Meta::Mode(OutputFormat::Json)),
            _ => bail!(".mode takes table, csv or json"),
        },
        ".output" | "\\o" => Ok(Meta::Output(argument.map(PathBuf::from))),
        other => bail!("unknown command '{other}'; .help lists the commands"),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_both_spellings() {
        assert_eq!(parse("\\dt").unwrap(), Meta::Tables);
        assert_eq!(
            parse("\\d amsterdam.public.air_quality").unwrap(),
            Meta::Schema(Some("amsterdam.public.air_quality".into()))
        );
        assert_eq!(parse(".timer on").unwrap(), Meta::Timer(true));
        assert_eq!(parse(".mode csv").unwrap(), Meta::Mode(OutputFormat::Csv));
        assert_eq!(parse(".output").unwrap(), Meta::Output(None));
        assert!(
            parse(".tables x")
                .unwrap_err()
                .to_string()
                .contains("no argument")
        );
        assert!(parse(".nope").unwrap_err().to_string().contains(".help"));
    }
}
