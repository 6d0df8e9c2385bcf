//! A two-device todo app over `sync-engine`: see the `sync_examples` crate docs.
//!
//! ```text
//! cargo run -p sync-examples --example todo                    # type commands
//! cargo run -p sync-examples --example todo -- --script FILE   # replay a file
//! ```
//!
//! Commands come from the terminal with a prompt, or, when standard input is not a
//! terminal (a pipe) or `--script FILE` is given, from there, each echoed after `> `.

use std::io::{self, BufReader, IsTerminal};
use std::process::ExitCode;
use sync_examples::todo::{run, Mode, TodoApp};

const USAGE: &str = "usage: todo [--script FILE]";

fn main() -> ExitCode {
    let args: Vec<String> = std::env::args().skip(1).collect();
    let script = match args.as_slice() {
        [] => None,
        [flag, path] if flag == "--script" => Some(path.clone()),
        [flag] if flag == "--help" || flag == "-h" => {
            println!("{USAGE}");
            return ExitCode::SUCCESS;
        }
        _ => {
            eprintln!("{USAGE}");
            return ExitCode::from(64);
        }
    };
    let mut app = match TodoApp::open() {
        Ok(app) => app,
        Err(error) => {
            eprintln!("todo: {error}");
            return ExitCode::FAILURE;
        }
    };
    let mut out = io::stdout().lock();
    let outcome = match script {
        Some(path) => match std::fs::File::open(&path) {
            Ok(file) => run(&mut app, BufReader::new(file), &mut out, Mode::Script),
            Err(error) => {
                eprintln!("todo: cannot read {path}: {error}");
                return ExitCode::from(64);
            }
        },
        None if io::stdin().is_terminal() => {
            println!("Two devices of one tenant, phone and laptop, and a server. Type `help`.");
            run(&mut app, io::stdin().lock(), &mut out, Mode::Interactive)
        }
        None => run(&mut app, io::stdin().lock(), &mut out, Mode::Script),
    };
    match outcome {
        Ok(()) => ExitCode::SUCCESS,
        Err(error) => {
            eprintln!("todo: {error}");
            ExitCode::FAILURE
        }
    }
}
