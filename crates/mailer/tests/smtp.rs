//! The SMTP adapter against a small SMTP peer on localhost: the mail arrives with its sender,
//! recipient, subject and body; a refusing relay is an error, not a hang.

use kernel::mail::{Mail, Mailer as _};
use mailer::SmtpMailer;
use tokio::io::{AsyncBufReadExt as _, AsyncWriteExt as _, BufReader};
use tokio::net::TcpListener;

/// Speaks just enough SMTP for one mail; answers `refuse_rcpt` to RCPT TO when given.
async fn peer(refuse_rcpt: bool) -> (u16, tokio::task::JoinHandle<String>) {
    let listener = TcpListener::bind("127.0.0.1:0").await.expect("bind");
    let port = listener.local_addr().expect("addr").port();
    let task = tokio::spawn(async move {
        let (socket, _) = listener.accept().await.expect("accept");
        let (read, mut write) = socket.into_split();
        let mut lines = BufReader::new(read).lines();
        write.write_all(b"220 test ESMTP\r\n").await.expect("greet");
        let mut transcript = String::new();
        let mut in_data = false;
        while let Ok(Some(line)) = lines.next_line().await {
            transcript.push_str(&line);
            transcript.push('\n');
            let reply: &[u8] = if in_data {
                if line == "." {
                    in_data = false;
                    b"250 queued\r\n"
                } else {
                    continue;
                }
            } else {
                let upper = line.to_ascii_uppercase();
                if upper.starts_with("EHLO") || upper.starts_with("HELO") {
                    b"250 test\r\n"
                } else if upper.starts_with("RCPT") && refuse_rcpt {
                    b"550 no such user\r\n"
                } else if upper.starts_with("DATA") {
                    in_data = true;
                    b"354 go ahead\r\n"
                } else if upper.starts_with("QUIT") {
                    let _ = write.write_all(b"221 bye\r\n").await;
                    break;
                } else {
                    b"250 ok\r\n"
                }
            };
            if write.write_all(reply).await.is_err() {
                break;
            }
        }
        transcript
    });
    (port, task)
}

fn mail() -> Mail {
    Mail {
        to: "ann@example.com".to_owned(),
        subject: "Your Quire sign-in code: 123456".to_owned(),
        body: "Your Quire sign-in code is 123456.".to_owned(),
    }
}

#[tokio::test]
async fn a_mail_reaches_the_relay() {
    let (port, transcript) = peer(false).await;
    let mailer = SmtpMailer::new(
        &format!("smtp://127.0.0.1:{port}"),
        "Quire <no-reply@quire.test>",
    )
    .expect("mailer");
    mailer.send(mail()).await.expect("sent");
    drop(mailer);
    let text = tokio::time::timeout(std::time::Duration::from_secs(10), transcript)
        .await
        .expect("the peer finishes")
        .expect("task");
    assert!(text.contains("MAIL FROM:<no-reply@quire.test>"), "{text}");
    assert!(text.contains("RCPT TO:<ann@example.com>"), "{text}");
    assert!(
        text.contains("Subject: Your Quire sign-in code: 123456"),
        "{text}"
    );
    assert!(
        text.contains("Your Quire sign-in code is 123456."),
        "{text}"
    );
}

#[tokio::test]
async fn a_refusing_relay_is_an_error() {
    let (port, _transcript) = peer(true).await;
    let mailer = SmtpMailer::new(&format!("smtp://127.0.0.1:{port}"), "no-reply@quire.test")
        .expect("mailer");
    assert!(mailer.send(mail()).await.is_err());
}

#[tokio::test]
async fn bad_configuration_is_refused_without_echoing_secrets() {
    let err = SmtpMailer::new("http://user:hunter2@host", "x@y.z").expect_err("not smtp");
    assert!(!err.to_string().contains("hunter2"), "{err}");
    assert!(SmtpMailer::new("smtp://host:25", "not an address").is_err());
    let ok = SmtpMailer::new("smtps://user:hunter2@smtp.example.com:465", "Quire <a@b.c>")
        .expect("valid");
    assert!(!format!("{ok:?}").contains("hunter2"));
}
