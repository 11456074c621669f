//! A throwaway PostgreSQL server for tests: `initdb` into a temporary
//! directory, listening only on a Unix socket there (no TCP port to collide
//! on), `fsync=off`; stopped and removed when dropped. As root it runs the
//! server as the `postgres` user (PostgreSQL refuses to run as root).
//!
//! `fsync=off` only skips flushes to the disk (the machine does not crash in
//! a test). `synchronous_commit` stays on: with it off, a commit returns
//! before its WAL record is written, and [`ThrowawayPostgres::kill`] would
//! lose acknowledged shares, as it would in production.
//!
//! A missing PostgreSQL is a failure, never a skip: `scripts/test.sh`
//! installs it.

#![allow(dead_code, unreachable_pub)]

use std::path::{Path, PathBuf};
use std::process::Command;
use std::sync::atomic::{AtomicUsize, Ordering};

pub struct ThrowawayPostgres {
    dir: PathBuf,
    bin: PathBuf,
    as_postgres: bool,
    /// With TLS: also listening on this loopback port, its certificate
    /// signed by `ca.pem` in `dir`.
    tls_port: Option<u16>,
    /// Whether commits wait for the disk (`fsync=on`), as in production.
    durable: bool,
    /// Whether TLS clients must show a certificate of the test CA (`cert`
    /// authentication; `client.pem` and `client.key` in `dir` are one).
    client_certs: bool,
}

/// A test CA, a server certificate for 127.0.0.1 and a client certificate
/// for the user `postgres` it signed, in `dir`.
fn make_server_certificate(dir: &Path) {
    let script = "set -e
        ec='-newkey ec -pkeyopt ec_paramgen_curve:prime256v1 -nodes'
        openssl req -x509 $ec -keyout ca.key -out ca.pem -days 2 -subj '/CN=vision test CA' 2>/dev/null
        openssl req $ec -keyout server.key -out server.csr -subj '/CN=127.0.0.1' 2>/dev/null
        echo 'subjectAltName=IP:127.0.0.1' > server.ext
        openssl x509 -req -in server.csr -CA ca.pem -CAkey ca.key -CAcreateserial -out server.pem \
            -days 2 -extfile server.ext 2>/dev/null
        openssl req $ec -keyout client.key -out client.csr -subj '/CN=postgres' 2>/dev/null
        echo 'extendedKeyUsage=clientAuth' > client.ext
        openssl x509 -req -in client.csr -CA ca.pem -CAkey ca.key -CAcreateserial -out client.pem -days 2 \
            -extfile client.ext 2>/dev/null
        chmod 600 server.key";
    let status = Command::new("sh").args(["-c", script]).current_dir(dir).status();
    assert!(status.is_ok_and(|s| s.success()), "openssl made no certificate (scripts/test.sh installs openssl)");
}

/// The directory holding `initdb`, `pg_ctl` and `createdb`: Debian's
/// versioned directory (newest first), or one on PATH.
fn bin_dir() -> Option<PathBuf> {
    let complete = |dir: &Path| ["initdb", "pg_ctl", "createdb", "psql"].iter().all(|p| dir.join(p).is_file());
    let mut versions: Vec<PathBuf> = std::fs::read_dir("/usr/lib/postgresql")
        .into_iter()
        .flatten()
        .filter_map(|e| e.ok().map(|e| e.path().join("bin")))
        .filter(|bin| complete(bin))
        .collect();
    versions.sort();
    versions.pop().or_else(|| {
        let path = std::env::var_os("PATH")?;
        std::env::split_paths(&path).find(|dir| complete(dir))
    })
}

fn is_root() -> bool {
    Command::new("id").arg("-u").output().is_ok_and(|o| String::from_utf8_lossy(&o.stdout).trim() == "0")
}

impl ThrowawayPostgres {
    /// Starts a fresh server; panics with the reason when it cannot.
    pub fn start() -> Self {
        Self::start_with(false, false, false)
    }

    /// Starts a fresh server whose commits wait for the disk (`fsync=on`,
    /// full page writes), for benchmarks of what a commit costs.
    pub fn start_durable() -> Self {
        Self::start_with(false, true, false)
    }

    /// Starts a fresh server that also takes TLS connections on a loopback
    /// port ([`ThrowawayPostgres::tls_url`]), with a certificate of a test CA
    /// ([`ThrowawayPostgres::ca_pem`]).
    pub fn start_tls() -> Self {
        Self::start_with(true, false, false)
    }

    /// As [`ThrowawayPostgres::start_tls`], and TLS clients must also show a
    /// certificate of the test CA for their user (`cert` authentication;
    /// [`ThrowawayPostgres::client_cert_pem`] is one for `postgres`).
    pub fn start_tls_client_certs() -> Self {
        Self::start_with(true, false, true)
    }

    fn start_with(tls: bool, durable: bool, client_certs: bool) -> Self {
        static N: AtomicUsize = AtomicUsize::new(0);
        let bin = bin_dir().unwrap_or_else(|| {
            panic!(
                "PostgreSQL is not installed (no initdb on PATH or in /usr/lib/postgresql/*/bin): \
                 scripts/test.sh installs it (apt-get install postgresql)"
            )
        });
        let dir = std::env::temp_dir().join(format!(
            "vision-pg-{}-{}",
            std::process::id(),
            N.fetch_add(1, Ordering::Relaxed)
        ));
        let _ = std::fs::remove_dir_all(&dir);
        std::fs::create_dir_all(&dir).expect("temp dir for PostgreSQL");
        let tls_port = tls.then(|| {
            make_server_certificate(&dir);
            std::net::TcpListener::bind("127.0.0.1:0").expect("bind").local_addr().expect("address").port()
        });
        let as_postgres = is_root();
        if as_postgres {
            let chown = Command::new("chown").args(["-R", "postgres:postgres"]).arg(&dir).status();
            assert!(chown.is_ok_and(|s| s.success()), "chown {} to postgres", dir.display());
        }
        let server = ThrowawayPostgres { dir, bin, as_postgres, tls_port, durable, client_certs };
        let data = server.dir.join("data");
        server.run(
            "initdb",
            &[
                "-D".as_ref(),
                data.as_os_str(),
                "-A".as_ref(),
                "trust".as_ref(),
                "-U".as_ref(),
                "postgres".as_ref(),
                "-E".as_ref(),
                "UTF8".as_ref(),
                "--locale=C".as_ref(),
                "--no-sync".as_ref(),
            ],
        );
        if client_certs {
            // Over TCP only TLS with a client certificate of the test CA
            // whose CN is the user; psql keeps the trusted Unix socket.
            let hba = "local all all trust\nhostssl all all 127.0.0.1/32 cert\n";
            std::fs::write(data.join("pg_hba.conf"), hba).expect("write pg_hba.conf");
        }
        server.restart();
        server
    }

    /// The client certificate (PEM) for the user `postgres`, signed by the test CA.
    pub fn client_cert_pem(&self) -> Vec<u8> {
        std::fs::read(self.dir.join("client.pem")).expect("client.pem")
    }

    /// The private key (PEM) of [`ThrowawayPostgres::client_cert_pem`].
    pub fn client_key_pem(&self) -> Vec<u8> {
        std::fs::read(self.dir.join("client.key")).expect("client.key")
    }

    fn command(&self, program: &str) -> Command {
        let path = self.bin.join(program);
        if self.as_postgres {
            let mut command = Command::new("runuser");
            command.args(["-u", "postgres", "--"]).arg(path);
            command
        } else {
            Command::new(path)
        }
    }

    fn run(&self, program: &str, args: &[&std::ffi::OsStr]) {
        let output = self.command(program).args(args).output().unwrap_or_else(|e| panic!("{program}: {e}"));
        assert!(
            output.status.success(),
            "{program} failed: {}{}",
            String::from_utf8_lossy(&output.stdout),
            String::from_utf8_lossy(&output.stderr)
        );
    }

    /// The socket directory (the URL's `host`).
    pub fn socket_dir(&self) -> &Path {
        &self.dir
    }

    /// Creates database `name` and returns its URL.
    pub fn database(&self, name: &str) -> String {
        let dir = self.dir.as_os_str();
        let port = self.port().to_string();
        self.run(
            "createdb",
            &["-p".as_ref(), port.as_ref(), "-h".as_ref(), dir, "-U".as_ref(), "postgres".as_ref(), name.as_ref()],
        );
        self.url(name)
    }

    /// The URL of database `name` (libpq style, over the Unix socket).
    pub fn url(&self, name: &str) -> String {
        format!("postgres://postgres@/{name}?host={}&port={}", self.dir.display(), self.port())
    }

    /// The URL of database `name` over TLS (a server started with [`ThrowawayPostgres::start_tls`]).
    pub fn tls_url(&self, name: &str) -> String {
        format!("postgres://postgres@127.0.0.1:{}/{name}?sslmode=require", self.port())
    }

    /// The test CA's certificate (PEM) that signed the server's.
    pub fn ca_pem(&self) -> Vec<u8> {
        std::fs::read(self.dir.join("ca.pem")).expect("ca.pem")
    }

    /// Runs one SQL query with psql on `database` (over the Unix socket) and
    /// returns its output, unaligned.
    pub fn query(&self, database: &str, sql: &str) -> String {
        let output = self.psql(database, sql);
        assert!(output.status.success(), "psql: {}", String::from_utf8_lossy(&output.stderr));
        String::from_utf8_lossy(&output.stdout).trim().to_string()
    }

    /// Runs SQL that the server must refuse, and returns why (psql's error).
    pub fn refused(&self, database: &str, sql: &str) -> String {
        let output = self.psql(database, sql);
        assert!(!output.status.success(), "accepted: {sql}");
        String::from_utf8_lossy(&output.stderr).trim().to_string()
    }

    fn psql(&self, database: &str, sql: &str) -> std::process::Output {
        self.command("psql")
            .args(["-h".as_ref(), self.dir.as_os_str()])
            .args([
                "-p",
                &self.port().to_string(),
                "-U",
                "postgres",
                "-d",
                database,
                "-v",
                "ON_ERROR_STOP=1",
                "-Atc",
                sql,
            ])
            .output()
            .expect("psql")
    }

    fn port(&self) -> u16 {
        self.tls_port.unwrap_or(5432)
    }

    /// Stops the server at once (as a crash would), keeping its files.
    pub fn kill(&self) {
        let data = self.dir.join("data");
        let _ = self
            .command("pg_ctl")
            .args(["-D".as_ref(), data.as_os_str(), "-m".as_ref(), "immediate".as_ref(), "stop".as_ref()])
            .output();
    }

    /// Starts the server (again, after [`ThrowawayPostgres::kill`], on the same files).
    pub fn restart(&self) {
        let data = self.dir.join("data");
        let dir = self.dir.display();
        let listen = match self.tls_port {
            Some(port) => format!(
                "-c listen_addresses=127.0.0.1 -p {port} -c ssl=on -c ssl_cert_file={dir}/server.pem \
                 -c ssl_key_file={dir}/server.key{}",
                if self.client_certs { format!(" -c ssl_ca_file={dir}/ca.pem") } else { String::new() }
            ),
            None => "-c listen_addresses=''".into(),
        };
        let flushes = if self.durable { "" } else { "-c fsync=off -c full_page_writes=off" };
        let options = format!("-k {dir} {listen} {flushes} -c max_connections=300");
        let log = self.dir.join("server.log");
        self.run(
            "pg_ctl",
            &[
                "-D".as_ref(),
                data.as_os_str(),
                "-l".as_ref(),
                log.as_os_str(),
                "-o".as_ref(),
                options.as_ref(),
                "-w".as_ref(),
                "start".as_ref(),
            ],
        );
    }
}

impl Drop for ThrowawayPostgres {
    fn drop(&mut self) {
        self.kill();
        let _ = std::fs::remove_dir_all(&self.dir);
    }
}
