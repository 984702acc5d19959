//! Helpers: temporary homes driving the real `meridian` binary.

use std::path::{Path, PathBuf};
use std::process::{Command, Output};

use serde_json::Value;

/// The `meridian` binary under test: the one cargo built for these tests, or the one
/// `MERIDIAN_TEST_BIN` names, to show that a new test fails on an older build
/// (`MERIDIAN_TEST_BIN=/tmp/old/meridian cargo test --test it daily::`).
pub fn meridian_bin() -> PathBuf {
    std::env::var_os("MERIDIAN_TEST_BIN")
        .map(PathBuf::from)
        .unwrap_or_else(|| PathBuf::from(env!("CARGO_BIN_EXE_meridian")))
}

/// One person's home in a temporary directory.
pub struct Home {
    pub dir: PathBuf,
    _tmp: std::sync::Arc<tempfile::TempDir>,
}

/// A set of homes sharing one temporary directory.
pub struct World {
    pub tmp: std::sync::Arc<tempfile::TempDir>,
}

impl World {
    pub fn new() -> World {
        World {
            tmp: std::sync::Arc::new(tempfile::tempdir().unwrap()),
        }
    }

    /// A new home with an identity.
    pub fn person(&self, name: &str, tz: &str) -> Home {
        let home = Home {
            dir: self.tmp.path().join(name.to_lowercase()),
            _tmp: self.tmp.clone(),
        };
        home.ok(&["init", "--name", name, "--tz", tz]);
        home
    }

    /// A new home in directory `dir` with an identity named `name` (another device of a
    /// person who has a home already).
    pub fn home_in(&self, dir: &str, name: &str, tz: &str) -> Home {
        let home = Home {
            dir: self.tmp.path().join(dir),
            _tmp: self.tmp.clone(),
        };
        home.ok(&["init", "--name", name, "--tz", tz]);
        home
    }

    /// A path for a file in the shared directory.
    pub fn file(&self, name: &str) -> PathBuf {
        self.tmp.path().join(name)
    }

    /// Ana creates `acme`; everyone else joins with an invite and merges her bundle.
    pub fn team(&self, people: &[(&str, &str)]) -> Vec<Home> {
        let homes: Vec<Home> = people.iter().map(|(n, tz)| self.person(n, tz)).collect();
        homes[0].ok(&["workspace", "create", "acme"]);
        for home in &homes[1..] {
            let code = homes[0].ok(&["invite"]);
            home.ok(&["join", code.trim()]);
        }
        // Everyone exchanges the workspace document so all memberships verify.
        for _ in 0..2 {
            for (i, from) in homes.iter().enumerate() {
                for (j, to) in homes.iter().enumerate() {
                    if i != j {
                        sync_pair(self, from, to);
                    }
                }
            }
        }
        homes
    }

    /// Ana (Tokyo), Bo (Berlin) and Cy (Lima) in `acme`, exchanging bundles: a working day
    /// apart from each other.
    pub fn three(&self) -> [Home; 3] {
        let homes = self.team(&[
            ("Ana", "Asia/Tokyo"),
            ("Bo", "Europe/Berlin"),
            ("Cy", "America/Lima"),
        ]);
        <[Home; 3]>::try_from(homes).ok().unwrap()
    }
}

/// `from` exports everything; `to` merges it.
pub fn sync_pair(world: &World, from: &Home, to: &Home) {
    let bundle = world.file(&format!("{}-to-{}.bundle", from.name(), to.name()));
    from.ok(&[
        "export",
        "--all",
        "--format",
        "bundle",
        "-o",
        bundle.to_str().unwrap(),
    ]);
    to.ok(&["merge", bundle.to_str().unwrap()]);
}

impl Home {
    pub fn name(&self) -> String {
        self.dir.file_name().unwrap().to_string_lossy().into_owned()
    }

    pub fn path(&self) -> &Path {
        &self.dir
    }

    /// Runs the binary with this home.
    pub fn run(&self, args: &[&str]) -> Output {
        Command::new(meridian_bin())
            .args(args)
            .env("MERIDIAN_HOME", &self.dir)
            .env_remove("EDITOR")
            .env_remove("VISUAL")
            .output()
            .expect("the meridian binary runs")
    }

    /// Runs and expects success; returns stdout.
    #[track_caller]
    pub fn ok(&self, args: &[&str]) -> String {
        let output = self.run(args);
        let stdout = String::from_utf8_lossy(&output.stdout).into_owned();
        let stderr = String::from_utf8_lossy(&output.stderr).into_owned();
        assert!(
            output.status.success(),
            "meridian {args:?} failed for {}:\n{stderr}\n{stdout}",
            self.name()
        );
        stdout
    }

    /// Runs with --json and parses stdout.
    #[track_caller]
    pub fn json(&self, args: &[&str]) -> Value {
        let mut all = vec!["--json"];
        all.extend_from_slice(args);
        let out = self.ok(&all);
        serde_json::from_str(&out)
            .unwrap_or_else(|e| panic!("meridian {args:?} printed invalid JSON ({e}):\n{out}"))
    }

    /// Runs and expects failure; returns stderr.
    #[track_caller]
    pub fn err(&self, args: &[&str]) -> String {
        let output = self.run(args);
        let stderr = String::from_utf8_lossy(&output.stderr).into_owned();
        assert!(
            !output.status.success(),
            "meridian {args:?} should have failed:\n{}",
            String::from_utf8_lossy(&output.stdout)
        );
        assert!(
            stderr.starts_with("error: "),
            "errors go to stderr with `error: `: {stderr}"
        );
        assert!(
            !stderr.contains("panicked"),
            "a panic is not an error message: {stderr}"
        );
        stderr
    }

    /// Creates a document with --json and returns its id.
    #[track_caller]
    pub fn create(&self, args: &[&str]) -> String {
        self.json(args)["id"].as_str().expect("an id").to_string()
    }

    /// Everything the node has, as the bytes of a full bundle (stable while nothing changes).
    pub fn snapshot(&self) -> Vec<u8> {
        let path = self.dir.join("snapshot.bundle");
        self.ok(&[
            "export",
            "--all",
            "--format",
            "bundle",
            "-o",
            path.to_str().unwrap(),
        ]);
        let bytes = std::fs::read(&path).unwrap();
        std::fs::remove_file(&path).unwrap();
        bytes
    }
}
