//! `syncsim serve` as a child process on a free loopback port, for the tests that go
//! through the real binary. The child stops when the test drops it, and by itself after
//! a minute whatever happens to the test.

use std::io::{BufRead, BufReader};
use std::process::{Child, Command, Stdio};

pub struct ServeProcess {
    child: Child,
    pub endpoint: String,
}

impl ServeProcess {
    /// Starts `syncsim serve --addr 127.0.0.1:0 --quiet --stop-after 60 EXTRA…` and waits
    /// until it listens.
    pub fn start(extra: &[&str]) -> ServeProcess {
        let mut child = Command::new(env!("CARGO_BIN_EXE_syncsim"))
            .args([
                "serve",
                "--addr",
                "127.0.0.1:0",
                "--quiet",
                "--stop-after",
                "60",
            ])
            .args(extra)
            .stdout(Stdio::piped())
            .stderr(Stdio::inherit())
            .spawn()
            .expect("start syncsim serve");
        let stdout = child.stdout.take().expect("piped stdout");
        let mut first_line = String::new();
        let mut reader = BufReader::new(stdout);
        reader
            .read_line(&mut first_line)
            .expect("read the first line of syncsim serve");
        let endpoint = first_line
            .trim()
            .strip_prefix("syncsim serve: listening on ")
            .unwrap_or_else(|| panic!("syncsim serve did not start: {first_line:?}"))
            .to_owned();
        // The rest of its output (tenants, tokens) is read and dropped, so the child never
        // writes to a closed pipe.
        std::thread::spawn(move || std::io::copy(&mut reader, &mut std::io::sink()));
        ServeProcess { child, endpoint }
    }
}

impl Drop for ServeProcess {
    fn drop(&mut self) {
        // Already gone (its time limit) is fine: nothing left to stop.
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}
