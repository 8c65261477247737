//! `ProcessExtractor` end to end, through the `extract-child` binary: hostile files end as
//! clean errors or as a crashed child, and the test process lives on.

use std::time::Duration;

use documents::{ExtractError, ExtractLimits, ExtractedText, Extractor, Format};
use extract::{ExtractorConfig, ProcessExtractor, fixtures};

fn config() -> ExtractorConfig {
    ExtractorConfig {
        timeout: Duration::from_secs(60),
        memory_limit_bytes: 1024 * 1024 * 1024,
        max_concurrent: 4,
        ocr: None,
        files_per_child: extract::DEFAULT_FILES_PER_CHILD,
    }
}

fn child(config: ExtractorConfig) -> ProcessExtractor {
    ProcessExtractor::new(env!("CARGO_BIN_EXE_extract-child"), Vec::new(), config)
}

async fn run(format: Format, bytes: Vec<u8>) -> Result<ExtractedText, ExtractError> {
    child(config())
        .extract(format, bytes, ExtractLimits::default(), None)
        .await
}

#[tokio::test]
async fn a_stack_overflow_kills_the_child_only() {
    let outcome = run(Format::Pdf, fixtures::stack_overflow_pdf()).await;
    match outcome {
        Err(ExtractError::Crashed(reason)) => {
            assert!(reason.contains("stack overflow"), "{reason}");
        }
        other => panic!("expected a crash, got {other:?}"),
    }
    // This process is fine, and so is the next child.
    let text = run(Format::Pdf, fixtures::pdf(&["Still alive."]))
        .await
        .unwrap();
    assert_eq!(text.text, "Still alive.");
}

#[tokio::test]
async fn the_memory_limit_stops_a_pdf_bomb() {
    let small = ExtractorConfig {
        memory_limit_bytes: 256 * 1024 * 1024,
        ..config()
    };
    let outcome = child(small)
        .extract(
            Format::Pdf,
            fixtures::pdf_bomb(),
            ExtractLimits::default(),
            None,
        )
        .await;
    match outcome {
        Err(ExtractError::Crashed(reason)) => assert!(reason.contains("memory limit"), "{reason}"),
        other => panic!("expected the memory limit, got {other:?}"),
    }
}

#[tokio::test]
async fn a_pdf_that_makes_pdf_extract_panic_is_read_by_the_fallback() {
    let text = run(Format::Pdf, fixtures::panicking_pdf()).await.unwrap();
    assert_eq!(text.text, "Hello ASCII\n日本語テスト");
    assert_eq!(text.page_starts, vec![0]);
}

#[tokio::test]
async fn zip_bombs_are_too_large() {
    for (name, bytes) in [
        ("declared 1 GiB", fixtures::zip_bomb_docx()),
        ("lying about 1 GiB", fixtures::lying_zip_bomb_docx()),
        ("100,000 entries", fixtures::many_entries_docx(100_000)),
    ] {
        let outcome = run(Format::Docx, bytes).await;
        assert!(
            matches!(outcome, Err(ExtractError::TooLarge(_))),
            "{name}: {outcome:?}"
        );
    }
}

#[tokio::test]
async fn billion_laughs_is_refused() {
    let outcome = run(Format::Docx, fixtures::billion_laughs_docx()).await;
    match outcome {
        Err(ExtractError::Corrupt(reason)) => assert!(reason.contains("DTD"), "{reason}"),
        other => panic!("expected a refusal, got {other:?}"),
    }
}

#[tokio::test]
async fn pdf_refusals() {
    assert!(matches!(
        run(Format::Pdf, fixtures::encrypted_pdf()).await,
        Err(ExtractError::Encrypted)
    ));
    let limits = ExtractLimits {
        max_pages: 10,
        ..ExtractLimits::default()
    };
    assert!(matches!(
        child(config())
            .extract(Format::Pdf, fixtures::many_pages_pdf(11), limits, None)
            .await,
        Err(ExtractError::TooManyPages {
            pages: 11,
            limit: 10
        })
    ));
    assert!(matches!(
        run(Format::Pdf, fixtures::image_only_pdf()).await,
        Err(ExtractError::NoText)
    ));
    assert!(matches!(
        run(Format::Pdf, b"%PDF-1.7\nnot really".to_vec()).await,
        Err(ExtractError::Corrupt(_))
    ));
}

#[tokio::test]
async fn pages_and_docx_come_through() {
    let text = run(Format::Pdf, fixtures::pdf(&["One", "Two"]))
        .await
        .unwrap();
    assert_eq!(text.text, "One\n\nTwo");
    assert_eq!(text.page_starts, vec![0, 5]);
    let text = run(Format::Docx, fixtures::docx(&["Alpha", "Beta"]))
        .await
        .unwrap();
    assert_eq!(text.text, "Alpha\n\nBeta");
}

#[tokio::test]
async fn text_formats_come_through() {
    let mut utf16 = vec![0xff, 0xfe];
    utf16.extend("Grüße aus Köln".encode_utf16().flat_map(u16::to_le_bytes));
    assert_eq!(
        run(Format::Text, utf16).await.unwrap().text,
        "Grüße aus Köln"
    );

    let invalid = b"caf\xe9 au lait\n".to_vec();
    assert_eq!(
        run(Format::Text, invalid).await.unwrap().text,
        "caf\u{fffd} au lait\n"
    );

    let csv = b"name,age\nAda,36\nAlan,41\n".to_vec();
    let table = run(Format::Csv, csv).await.unwrap();
    assert_eq!(table.text, "name | age\nAda | 36\nAlan | 41");
    // The table's place crosses the process boundary.
    assert_eq!(
        table.tables,
        [documents::TableSpan {
            start: 0,
            header_end: 10,
            end: 29
        }]
    );

    let html = b"<html><head><title>Doc</title><style>p{}</style></head>\
        <body><script>steal()</script><p>Visible text.</p></body></html>"
        .to_vec();
    let out = run(Format::Html, html).await.unwrap();
    assert_eq!(out.title.as_deref(), Some("Doc"));
    assert_eq!(out.text, "Visible text.");

    let md = b"# Notes\n\n* one\n* two\n".to_vec();
    assert_eq!(
        run(Format::Markdown, md).await.unwrap().text,
        "# Notes\n\n* one\n* two\n"
    );
}

#[tokio::test]
async fn a_child_past_its_time_is_killed() {
    // A child that hangs (as a parser in an endless loop would) never answers: only the
    // timeout can end the wait, whatever the machine's speed.
    let hung = ProcessExtractor::new(
        "/bin/sh",
        vec!["-c".into(), "exec sleep 600".into()],
        ExtractorConfig {
            timeout: Duration::from_millis(50),
            ..config()
        },
    );
    let outcome = hung
        .extract(
            Format::Text,
            b"hello".to_vec(),
            ExtractLimits::default(),
            None,
        )
        .await;
    assert!(
        matches!(outcome, Err(ExtractError::TimedOut(1))),
        "{outcome:?}"
    );
}

#[tokio::test]
async fn what_a_dead_or_confused_child_means() {
    let sh =
        |script: &str| ProcessExtractor::new("/bin/sh", vec!["-c".into(), script.into()], config());
    let cases = [
        ("/bin/cat >/dev/null; echo nonsense", "garbage output"),
        ("/bin/cat >/dev/null; exit 7", "exit status 7"),
        ("kill -SEGV $$", "invalid memory access (signal 11)"),
        ("kill -ABRT $$", "stack overflow or abort (signal 6)"),
    ];
    for (script, reason) in cases {
        let outcome = sh(script)
            .extract(
                Format::Text,
                b"hello".to_vec(),
                ExtractLimits::default(),
                None,
            )
            .await;
        match outcome {
            Err(ExtractError::Crashed(r)) => assert_eq!(r, reason, "{script}"),
            other => panic!("{script}: {other:?}"),
        }
    }
    let missing = ProcessExtractor::new("/nonexistent/quire", Vec::new(), config());
    let outcome = missing
        .extract(
            Format::Text,
            b"hello".to_vec(),
            ExtractLimits::default(),
            None,
        )
        .await;
    assert!(matches!(&outcome, Err(e @ ExtractError::Unavailable(_)) if e.is_transient()));
    assert_eq!(missing.isolation(), "process");
    assert_eq!(missing.detect(Some("a.md"), b"# x"), Ok(Format::Markdown));
}

#[tokio::test]
async fn children_beyond_the_limit_wait_their_turn() {
    let one_at_a_time = std::sync::Arc::new(child(ExtractorConfig {
        max_concurrent: 1,
        ..config()
    }));
    let mut tasks = Vec::new();
    for i in 0..4 {
        let extractor = std::sync::Arc::clone(&one_at_a_time);
        tasks.push(tokio::spawn(async move {
            let page = format!("Document {i}");
            extractor
                .extract(
                    Format::Pdf,
                    fixtures::pdf(&[&page]),
                    ExtractLimits::default(),
                    None,
                )
                .await
                .map(|t| t.text)
        }));
    }
    for (i, task) in tasks.into_iter().enumerate() {
        assert_eq!(task.await.unwrap().unwrap(), format!("Document {i}"));
    }
}

/// Records every page count the extraction tells.
#[derive(Debug, Default)]
struct Seen(std::sync::Mutex<Vec<(u32, u32)>>);

impl documents::ExtractProgress for Seen {
    fn pages(&self, done: u32, total: u32) {
        self.0
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
            .push((done, total));
    }
}

/// The child tells the parent each page it has read, through its stderr, as it goes; the
/// lines are not mistaken for a crash, and the text is the same as without watching.
#[tokio::test]
async fn the_child_tells_each_page_it_reads() {
    let seen = std::sync::Arc::new(Seen::default());
    let text = child(config())
        .extract_reporting(
            Format::Pdf,
            fixtures::many_pages_pdf(7),
            ExtractLimits::default(),
            None,
            seen.clone(),
        )
        .await
        .expect("text");
    assert_eq!(text.pages(), Some(7));
    let seen = seen.0.lock().expect("lock").clone();
    assert_eq!(seen, (1..=7).map(|n| (n, 7)).collect::<Vec<_>>());
    let unwatched = run(Format::Pdf, fixtures::many_pages_pdf(7))
        .await
        .expect("text");
    assert_eq!(unwatched.text, text.text);
}

/// One file of `tenant` through `extractor`'s warm children.
async fn for_tenant(
    extractor: &ProcessExtractor,
    tenant: kernel::TenantId,
    format: Format,
    bytes: Vec<u8>,
) -> Result<ExtractedText, ExtractError> {
    extractor
        .extract_for(
            tenant,
            format,
            bytes,
            ExtractLimits::default(),
            None,
            std::sync::Arc::new(documents::NoProgress),
        )
        .await
}

/// A warm child takes the next files of its tenant, and never a file of another tenant: a
/// second tenant gets a child of its own, and each keeps reading its own tenant's files.
#[tokio::test]
async fn a_warm_child_reads_the_files_of_one_tenant_only() {
    let extractor = child(config());
    let (ann, bob) = (kernel::TenantId::new(), kernel::TenantId::new());
    for i in 0..3 {
        let page = format!("Ann's page {i}");
        let text = for_tenant(&extractor, ann, Format::Pdf, fixtures::pdf(&[&page]))
            .await
            .expect("text");
        assert_eq!(text.text, page);
    }
    assert_eq!(extractor.children().started, 1, "one warm child for ann");
    let text = for_tenant(&extractor, bob, Format::Text, b"Bob's notes".to_vec())
        .await
        .expect("text");
    assert_eq!(text.text, "Bob's notes");
    assert_eq!(
        extractor.children().started,
        2,
        "bob never gets ann's child"
    );
    for (tenant, body) in [(ann, "ann again"), (bob, "bob again")] {
        let text = for_tenant(&extractor, tenant, Format::Text, body.as_bytes().to_vec())
            .await
            .expect("text");
        assert_eq!(text.text, body);
    }
    assert_eq!(extractor.children().started, 2);
    assert_eq!(extractor.children().idle, 2);
    // Without a tenant, a child per file, none kept.
    run(Format::Text, b"anonymous".to_vec())
        .await
        .expect("text");
    let text = extractor
        .extract(Format::Text, b"x".to_vec(), ExtractLimits::default(), None)
        .await
        .expect("text");
    assert_eq!(text.text, "x");
    assert_eq!(extractor.children().started, 3);
    assert_eq!(extractor.children().idle, 2);
}

/// A warm child is replaced after `files_per_child` files, and 0 means a child per file.
#[tokio::test]
async fn a_warm_child_is_replaced_after_its_files() {
    let tenant = kernel::TenantId::new();
    let two = child(ExtractorConfig {
        files_per_child: 2,
        ..config()
    });
    for i in 0..5 {
        let body = format!("file {i}");
        let text = for_tenant(&two, tenant, Format::Text, body.clone().into_bytes())
            .await
            .expect("text");
        assert_eq!(text.text, body);
    }
    assert_eq!(two.children().started, 3, "files 1-2, 3-4, 5");
    let none = child(ExtractorConfig {
        files_per_child: 0,
        ..config()
    });
    for _ in 0..3 {
        for_tenant(&none, tenant, Format::Text, b"x".to_vec())
            .await
            .expect("text");
    }
    assert_eq!(none.children().started, 3);
    assert_eq!(none.children().idle, 0);
}

/// A crash of a warm child (a stack overflow) is tried once more on a fresh child (it
/// crashes there too, so the file is the cause), the crashed children are not kept, and the
/// tenant's next file is read by a fresh child. A clean panic (caught in the child) ends the
/// child after its answer too.
#[tokio::test]
async fn a_crashed_warm_child_is_replaced() {
    let extractor = child(config());
    let tenant = kernel::TenantId::new();
    for_tenant(&extractor, tenant, Format::Text, b"warm".to_vec())
        .await
        .expect("text");
    assert_eq!(extractor.children().started, 1);
    match for_tenant(
        &extractor,
        tenant,
        Format::Pdf,
        fixtures::stack_overflow_pdf(),
    )
    .await
    {
        Err(ExtractError::Crashed(reason)) => {
            assert!(reason.contains("stack overflow"), "{reason}")
        }
        other => panic!("expected a crash, got {other:?}"),
    }
    assert_eq!(
        extractor.children().started,
        2,
        "the warm child crashed, then a fresh one did"
    );
    assert_eq!(extractor.children().idle, 0);
    let text = for_tenant(&extractor, tenant, Format::Pdf, fixtures::pdf(&["After."]))
        .await
        .expect("text");
    assert_eq!(text.text, "After.");
    assert_eq!(extractor.children().started, 3);
    assert_eq!(extractor.children().idle, 1);
}

/// A warm child past its time is killed, and the next file gets a fresh child. The slow file
/// is 20,000 pages (seconds of work on any machine) against a timeout of 2 s.
#[tokio::test]
async fn a_warm_child_past_its_time_is_replaced() {
    let extractor = child(ExtractorConfig {
        timeout: Duration::from_secs(2),
        ..config()
    });
    let tenant = kernel::TenantId::new();
    for_tenant(&extractor, tenant, Format::Text, b"quick".to_vec())
        .await
        .expect("text");
    let slow = extractor
        .extract_for(
            tenant,
            Format::Pdf,
            fixtures::many_pages_pdf(20_000),
            ExtractLimits {
                max_pages: 100_000,
                ..ExtractLimits::default()
            },
            None,
            std::sync::Arc::new(documents::NoProgress),
        )
        .await;
    assert!(matches!(slow, Err(ExtractError::TimedOut(2))), "{slow:?}");
    assert_eq!(extractor.children().idle, 0);
    let text = for_tenant(&extractor, tenant, Format::Text, b"next".to_vec())
        .await
        .expect("text");
    assert_eq!(text.text, "next");
    assert_eq!(extractor.children().started, 2);
}

/// A warm child tells the pages of each file to that file's watcher only.
#[tokio::test]
async fn a_warm_child_tells_each_file_its_own_pages() {
    let extractor = child(config());
    let tenant = kernel::TenantId::new();
    for n in [3u32, 5] {
        let seen = std::sync::Arc::new(Seen::default());
        extractor
            .extract_for(
                tenant,
                Format::Pdf,
                fixtures::many_pages_pdf(n as usize),
                ExtractLimits::default(),
                None,
                seen.clone(),
            )
            .await
            .expect("text");
        let seen = seen.0.lock().expect("lock").clone();
        assert_eq!(seen, (1..=n).map(|p| (p, n)).collect::<Vec<_>>());
    }
    assert_eq!(extractor.children().started, 1);
}
