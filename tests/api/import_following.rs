//! How `roster import` follows its job and shows it: over the WebSocket or by polling,
//! a bar on a terminal, plain lines elsewhere, nothing with `--quiet`; a cancelled job; and
//! a large file streamed with little memory.

use roster::auth::Role;
use serde_json::json;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream};

use crate::helpers::{Backend, TestApp, peak_rss, roster_command, spawn_app, spawn_app_with};
use crate::import_command::{
    GOOD_ROWS, HEADER, ONE_BAD_ROW, assert_exit, csv_file, import, import_through, stderr, stdout,
};

/// A relay in front of `app`, as a proxy that does not pass WebSockets would be: it answers
/// each request for `/graphql/ws` with 403 and passes every other connection through.
async fn relay_without_websockets(app: &TestApp) -> String {
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let address = listener.local_addr().unwrap();
    let upstream = format!("127.0.0.1:{}", app.port);
    tokio::spawn(async move {
        while let Ok((mut client, _)) = listener.accept().await {
            let upstream = upstream.clone();
            tokio::spawn(async move {
                const WS: &[u8] = b"GET /graphql/ws";
                let mut start = Vec::new();
                let mut buffer = [0u8; 4096];
                while start.len() < WS.len() {
                    match client.read(&mut buffer).await {
                        Ok(0) | Err(_) => return,
                        Ok(n) => start.extend_from_slice(&buffer[..n]),
                    }
                }
                if start.starts_with(WS) {
                    let refusal =
                        "HTTP/1.1 403 Forbidden\r\ncontent-length: 0\r\nconnection: close\r\n\r\n";
                    let _ = client.write_all(refusal.as_bytes()).await;
                    return;
                }
                let mut server = TcpStream::connect(&upstream).await.unwrap();
                server.write_all(&start).await.unwrap();
                let _ = tokio::io::copy_bidirectional(&mut client, &mut server).await;
            });
        }
    });
    format!("http://{address}")
}

#[tokio::test]
async fn the_job_is_followed_over_the_websocket() {
    let app = spawn_app(Backend::Sqlite).await;
    let (_dir, file) = csv_file(GOOD_ROWS);
    let output = import(&app, &file, &[]).await;
    assert_exit(&output, 0);
    let err = stderr(&output);
    assert!(err.contains(": following it over the WebSocket\n"), "{err}");
    assert!(!err.contains("cannot follow"), "{err}");
}

#[tokio::test]
async fn a_refused_websocket_falls_back_to_polling() {
    let app = spawn_app(Backend::Sqlite).await;
    let relay = relay_without_websockets(&app).await;
    let (_dir, file) = csv_file(ONE_BAD_ROW);
    let output = import_through(&app, &relay, &file, &[]).await;
    assert_exit(&output, 2);
    let err = stderr(&output);
    assert!(
        err.contains(": cannot follow it over the WebSocket ("),
        "{err}"
    );
    assert!(err.contains("403"), "{err}");
    assert!(err.contains("reading it every 500ms"), "{err}");
    assert!(!err.contains("following it over the WebSocket"), "{err}");
    assert!(
        err.contains(": COMPLETED_WITH_ERRORS, 2 of 2 rows (100%)\n"),
        "{err}"
    );
}

#[tokio::test]
async fn progress_is_plain_lines_when_not_on_a_terminal() {
    let app = spawn_app(Backend::Sqlite).await;
    let (_dir, file) = csv_file(GOOD_ROWS);
    let output = import(&app, &file, &[]).await;
    assert_exit(&output, 0);
    let err = stderr(&output);
    let id = err
        .lines()
        .find_map(|line| line.strip_prefix("job ")?.split(':').next())
        .unwrap_or_else(|| panic!("a progress line: {err}"))
        .to_owned();
    assert!(
        err.contains(&format!("job {id}: COMPLETED, 2 of 2 rows (100%)\n")),
        "{err}"
    );
    assert!(
        !err.contains('\r') && !err.contains('\x1b'),
        "no bar: {err:?}"
    );
}

#[tokio::test]
async fn quiet_prints_the_summary_alone() {
    let app = spawn_app(Backend::Sqlite).await;
    let (_dir, file) = csv_file(GOOD_ROWS);
    let output = import(&app, &file, &["--quiet"]).await;
    assert_exit(&output, 0);
    assert_eq!(stderr(&output), "");
    assert!(
        stdout(&output).contains(": COMPLETED\n"),
        "{}",
        stdout(&output)
    );
}

#[tokio::test]
async fn a_terminal_gets_a_bar_with_rows_per_second_and_time_left() {
    use std::io::Read as _;

    let app = spawn_app(Backend::Sqlite).await;
    let rows: String = (0..2000)
        .map(|n| format!("e{n},u{n}@x.io,Ann,Lee\n"))
        .collect();
    let (_dir, file) = csv_file(&rows);
    let size = nix::pty::Winsize {
        ws_row: 24,
        ws_col: 120,
        ws_xpixel: 0,
        ws_ypixel: 0,
    };
    let pty = nix::pty::openpty(Some(&size), None).unwrap();
    let mut command = roster_command();
    command
        .args(["import", file.to_str().unwrap(), "--server", &app.address])
        .env("ROSTER_TOKEN", app.token(Role::Admin))
        .env("TERM", "xterm")
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::from(pty.slave));
    let (status, screen) = tokio::task::spawn_blocking(move || {
        let child = command.spawn().unwrap();
        // The terminal's other end stays open only in the child: reading ends with it.
        drop(command);
        let mut terminal = std::fs::File::from(pty.master);
        let mut screen = Vec::new();
        let mut buffer = [0u8; 4096];
        // Linux answers EIO once the last holder of the terminal's side has closed it.
        while let Ok(n @ 1..) = terminal.read(&mut buffer) {
            screen.extend_from_slice(&buffer[..n]);
        }
        let output = child.wait_with_output().unwrap();
        (output.status, String::from_utf8_lossy(&screen).into_owned())
    })
    .await
    .unwrap();
    assert_eq!(status.code(), Some(0), "{screen}");
    assert!(screen.contains("/2,000 rows, "), "{screen:?}");
    assert!(screen.contains("/s, ETA "), "{screen:?}");
    assert!(screen.contains("\x1b["), "{screen:?}");
    assert!(
        !screen.contains(" of 2000 rows ("),
        "no plain lines: {screen:?}"
    );
}

#[tokio::test]
async fn a_200_mb_file_is_streamed_not_held_in_memory() {
    use std::io::{BufRead as _, BufReader, Write as _};

    // No workers: the job stays queued, so the command is still following it when its
    // peak memory is read, the whole upload behind it.
    let app = spawn_app_with(Backend::Sqlite, |config| config.jobs.workers = 0).await;
    let dir = tempfile::tempdir().unwrap();
    let file = dir.path().join("big.csv");
    let mut out = std::io::BufWriter::new(std::fs::File::create(&file).unwrap());
    out.write_all(HEADER.as_bytes()).unwrap();
    let long_name = "x".repeat(100 * 1024);
    for n in 0..2000 {
        writeln!(out, "e{n},u{n}@x.io,Ann,{long_name}").unwrap();
    }
    out.into_inner().unwrap().sync_all().unwrap();
    assert!(std::fs::metadata(&file).unwrap().len() > 200 * 1000 * 1000);

    let mut command = roster_command();
    command
        .args(["import", file.to_str().unwrap(), "--server", &app.address])
        .env("ROSTER_TOKEN", app.token(Role::Admin))
        .stdout(std::process::Stdio::null())
        .stderr(std::process::Stdio::piped());
    let (peak, seen) = tokio::task::spawn_blocking(move || {
        let mut child = command.spawn().unwrap();
        let mut seen = String::new();
        let mut peak = None;
        for line in BufReader::new(child.stderr.take().unwrap()).lines() {
            let line = line.unwrap();
            seen.push_str(&line);
            seen.push('\n');
            if line.contains(": QUEUED, 0 of 2000 rows") {
                peak = Some(peak_rss(child.id()));
                break;
            }
        }
        let _ = child.kill();
        let _ = child.wait();
        (peak, seen)
    })
    .await
    .unwrap();
    let peak = peak.unwrap_or_else(|| panic!("the job was never shown queued:\n{seen}"));
    assert!(
        peak < 64 * 1024 * 1024,
        "the command's peak memory was {} MiB",
        peak / 1024 / 1024
    );
    assert_eq!(app.count_rows("import_jobs").await, 1);
}

#[tokio::test]
async fn a_job_cancelled_while_followed_exits_3() {
    use std::io::{BufRead as _, BufReader, Read as _};

    // No workers: the job waits, queued, until it is cancelled.
    let app = spawn_app_with(Backend::Sqlite, |config| config.jobs.workers = 0).await;
    let (_dir, file) = csv_file(GOOD_ROWS);
    let mut command = roster_command();
    command
        .args(["import", file.to_str().unwrap(), "--server", &app.address])
        .env("ROSTER_TOKEN", app.token(Role::Admin))
        .stdout(std::process::Stdio::null())
        .stderr(std::process::Stdio::piped());
    let mut child = command.spawn().unwrap();
    let mut stderr = BufReader::new(child.stderr.take().unwrap());
    let (id, stderr) = tokio::task::spawn_blocking(move || {
        let mut line = String::new();
        while stderr.read_line(&mut line).unwrap() > 0 {
            if let Some(id) = line
                .strip_prefix("job ")
                .and_then(|rest| rest.strip_suffix(": QUEUED, 0 of 2 rows (0%)\n"))
            {
                return (id.to_owned(), stderr);
            }
            line.clear();
        }
        panic!("the job was never shown queued");
    })
    .await
    .unwrap();
    let cancel = "mutation($id: ID!) { cancelImportJob(id: $id) { status } }";
    let cancelled = app
        .graphql(&app.token(Role::Admin), cancel, json!({ "id": id }))
        .await;
    assert_eq!(cancelled.data()["cancelImportJob"]["status"], "CANCELLED");
    let (status, rest) = tokio::task::spawn_blocking(move || {
        let mut rest = String::new();
        let mut stderr = stderr;
        stderr.read_to_string(&mut rest).unwrap();
        (child.wait().unwrap(), rest)
    })
    .await
    .unwrap();
    assert_eq!(status.code(), Some(3), "{rest}");
    assert!(rest.contains(&format!("job {id} was cancelled")), "{rest}");
}

#[tokio::test]
async fn the_upload_is_shown_a_tenth_at_a_time_when_not_on_a_terminal() {
    let app = spawn_app(Backend::Sqlite).await;
    let rows: String = (0..20_000)
        .map(|n| format!("e{n},u{n}@x.io,Ann,Lee{}\n", "e".repeat(50)))
        .collect();
    let (_dir, file) = csv_file(&rows);
    let size = std::fs::metadata(&file).unwrap().len();
    assert!(size > 10 * 64 * 1024, "more than ten reads of the file");
    let output = import(&app, &file, &[]).await;
    assert_exit(&output, 0);
    let err = stderr(&output);
    let shown: Vec<_> = err
        .lines()
        .filter_map(|line| line.strip_prefix(&format!("uploading {}: ", file.display())))
        .collect();
    let tenths: Vec<String> = (1..=10).map(|n| format!("{}% of ", n * 10)).collect();
    assert_eq!(shown.len(), 10, "{err}");
    for (line, tenth) in shown.iter().zip(&tenths) {
        assert!(
            line.starts_with(tenth.as_str()) && line.ends_with("iB"),
            "{err}"
        );
    }
}
