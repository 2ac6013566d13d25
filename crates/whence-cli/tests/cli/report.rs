//! `whence report`: the page and the figure files, checked in headless
//! Chromium (skipped with a message when Chromium is absent, unless `CI` is
//! set: then its absence fails the test).

use std::io::Read;
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use crate::*;

/// Runs trace, select and attribute on the example into one directory.
fn example_runs(dir: &Path) {
    let records = example("records.jsonl").display().to_string();
    let file = |name: &str| format!("file:{}", example(name).display());
    let mut trace: Vec<String> = vec!["trace".into(), records.clone()];
    trace.extend(example_scorers());
    trace.extend(["--out".into(), dir.display().to_string(), "--format".into(), "jsonl".into()]);
    ok(whence(&trace));
    ok(whence([
        "select".to_string(),
        records,
        "--teacher".into(),
        file("teacher.jsonl"),
        "--student".into(),
        file("student.jsonl"),
        "--out".into(),
        dir.join("selected.jsonl").display().to_string(),
    ]));
    let mut attribute = example_attribution();
    attribute.extend(["--out".into(), dir.display().to_string()]);
    ok(whence(&attribute));
}

/// The Chromium binary, or `None` (and a message) when it is absent outside CI.
fn chromium() -> Option<PathBuf> {
    let found = ["chromium", "chromium-browser", "google-chrome", "google-chrome-stable"].iter().find_map(|name| {
        std::env::var_os("PATH").and_then(|paths| std::env::split_paths(&paths).map(|p| p.join(name)).find(|p| p.is_file()))
    });
    if found.is_none() {
        let ci = std::env::var("CI").is_ok_and(|v| !v.is_empty() && v != "false" && v != "0");
        assert!(!ci, "CI is set but Chromium is missing: install it (apt-get install -y chromium; .ci/run does)");
        eprintln!("skipping the browser check: chromium not found on PATH (install the Debian package `chromium`)");
    }
    found
}

/// Runs headless Chromium with `args` on `page`, with a fresh profile and a
/// time limit; returns (stdout, stderr, seconds).
fn run_chromium(binary: &Path, scratch: &Scratch, url: &str, args: &[String]) -> (String, String, f64) {
    let profile = scratch.join(&format!("chromium-profile-{}", args.len()));
    let _ = std::fs::remove_dir_all(&profile);
    let started = Instant::now();
    let mut child = Command::new(binary)
        .args([
            "--headless",
            "--no-sandbox",
            "--disable-gpu",
            "--no-first-run",
            "--disable-background-networking",
            "--disable-component-update",
            "--disable-sync",
            "--enable-logging=stderr",
            "--v=0",
        ])
        .arg(format!("--user-data-dir={}", profile.display()))
        .args(args)
        .arg(url)
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("chromium starts");
    let mut stdout = child.stdout.take().unwrap();
    let mut stderr = child.stderr.take().unwrap();
    let out_reader = std::thread::spawn(move || {
        let mut s = String::new();
        stdout.read_to_string(&mut s).unwrap();
        s
    });
    let err_reader = std::thread::spawn(move || {
        let mut s = String::new();
        stderr.read_to_string(&mut s).unwrap();
        s
    });
    let deadline = started + Duration::from_secs(120);
    loop {
        if child.try_wait().unwrap().is_some() {
            break;
        }
        if Instant::now() > deadline {
            let _ = child.kill();
            panic!("chromium did not finish within 120 s");
        }
        std::thread::sleep(Duration::from_millis(20));
    }
    let seconds = started.elapsed().as_secs_f64();
    (out_reader.join().unwrap(), err_reader.join().unwrap(), seconds)
}

/// The DOM after the page's script ran; asserts it ran to the end and
/// recorded no error, and that Chromium logged no page error. With
/// `virtual_time`, Chromium waits (in virtual time) for timers to settle;
/// without, it dumps right after the load event and the page's clock is real.
fn rendered_dom(binary: &Path, scratch: &Scratch, page: &Path, virtual_time: bool) -> (String, f64) {
    let url = format!("file://{}", page.display());
    let mut args = vec!["--dump-dom".to_string()];
    if virtual_time {
        args.push("--virtual-time-budget=10000".into());
    }
    let (dom, log, seconds) = run_chromium(binary, scratch, &url, &args);
    let html_tag = dom.find("<html").map(|i| &dom[i..i + dom[i..].find('>').unwrap()]).expect("a dumped <html> element");
    assert!(html_tag.contains("data-ready=\"ok\""), "the page's script did not finish: {html_tag}\n{log}");
    assert!(!html_tag.contains("data-errors"), "the page recorded errors: {html_tag}");
    for line in log.lines() {
        let lower = line.to_lowercase();
        assert!(
            !(line.contains("CONSOLE") && (lower.contains("uncaught") || lower.contains("error")))
                && !lower.contains("refused to")
                && !lower.contains("content security policy"),
            "chromium logged a page problem: {line}"
        );
    }
    (dom, seconds)
}

/// The SVG inside `<figure data-figure="NAME">` of the dumped DOM.
fn figure_svg<'a>(dom: &'a str, name: &str) -> &'a str {
    let start = dom.find(&format!("data-figure=\"{name}\"")).unwrap_or_else(|| panic!("figure {name} is missing from the page"));
    let svg = start + dom[start..].find("<svg").unwrap_or_else(|| panic!("figure {name} has no <svg>"));
    let end = svg + dom[svg..].find("</svg>").unwrap_or_else(|| panic!("figure {name}'s svg is not closed"));
    &dom[svg..end]
}

/// A screenshot of the page's first `height` pixels, kept under the target
/// directory (`report-screenshots/`) for a person to look at.
fn screenshot(binary: &Path, scratch: &Scratch, page: &Path, height: u32, name: &str) -> PathBuf {
    let dir = Path::new(env!("CARGO_TARGET_TMPDIR")).join("report-screenshots");
    std::fs::create_dir_all(&dir).unwrap();
    let path = dir.join(name);
    let _ = std::fs::remove_file(&path);
    let url = format!("file://{}", page.display());
    run_chromium(
        binary,
        scratch,
        &url,
        &[format!("--screenshot={}", path.display()), format!("--window-size=1280,{height}"), "--virtual-time-budget=10000".into()],
    );
    let bytes = std::fs::read(&path).expect("a screenshot");
    assert!(bytes.starts_with(b"\x89PNG") && bytes.len() > 20_000, "the screenshot {} is empty", path.display());
    path
}

const FIGURES: [&str; 12] = [
    "position-profile",
    "beta-search",
    "probability-differences",
    "behaviours",
    "trajectory-t000001",
    "select-beta-search",
    "selection",
    "attribution-shares",
    "attribution-profiles",
    "beta-search-true",
    "beta-search-spurious",
    "trajectory-t000002",
];

#[test]
fn report_of_trace_select_and_attribute_renders_in_chromium() {
    let scratch = Scratch::new("report");
    let run = scratch.join("run");
    example_runs(&run);
    let output = whence([
        "report".to_string(),
        run.display().to_string(),
        "--trajectory".into(),
        "t000001".into(),
        "--trajectory".into(),
        "t000002".into(),
    ]);
    let printed = ok(output);
    let page = run.join("report/index.html");
    assert_eq!(printed.trim(), page.display().to_string());

    // Every figure as SVG and PNG.
    let mut expected: Vec<String> = FIGURES.iter().flat_map(|f| [format!("{f}.png"), format!("{f}.svg")]).collect();
    expected.sort();
    assert_eq!(scratch.listing("run/report/figures"), expected);
    for name in FIGURES {
        let png = std::fs::read(run.join(format!("report/figures/{name}.png"))).unwrap();
        assert!(png.starts_with(b"\x89PNG\r\n\x1a\n") && png.len() > 5_000, "{name}.png is not a drawn PNG");
        let svg = std::fs::read_to_string(run.join(format!("report/figures/{name}.svg"))).unwrap();
        assert!(svg.starts_with("<svg") && svg.contains("<text") && svg.len() > 2_000, "{name}.svg is not a drawn figure");
    }

    // One self-contained file: nothing loaded from anywhere.
    let html = std::fs::read_to_string(&page).unwrap();
    for needle in ["src=\"http", "href=\"http", "src='http", "@import", "url(", "<link", "<iframe"] {
        assert!(!html.contains(needle), "index.html refers to an external resource ({needle})");
    }
    assert!(html.contains("Content-Security-Policy"));
    assert!(html.contains("keeps the same response for 18 of 18 questions"), "select's choices are recomputed from its summary");
    assert!(html.contains("id=\"behaviour-table\""));

    let Some(chromium) = chromium() else { return };
    let (dom, _) = rendered_dom(&chromium, &scratch, &page, true);
    for name in FIGURES {
        let svg = figure_svg(&dom, name);
        assert!(
            svg.len() > 2_000 && svg.contains("<text") && (svg.contains("<polyline") || svg.contains("<rect")),
            "figure {name} is empty"
        );
    }
    // The trajectory browser: the first page of 10 cards, each with its plot and highlighted text.
    assert_eq!(dom.matches("class=\"card\"").count(), 10);
    assert!(dom.contains("page 1 of 5 (48 of 48 trajectories)"), "pagination over all 48 trajectories");
    assert_eq!(dom.matches("class=\"traj\"").count(), 10);
    assert!(dom.contains("<polyline"));
    assert!(dom.contains("class=\"a L-t\"") && dom.contains("class=\"a L-h\""), "actions are highlighted by label");
    let shot = screenshot(&chromium, &scratch, &page, 14_000, "report-example.png");
    eprintln!("screenshot: {}", shot.display());
}

#[test]
fn report_is_deterministic_and_reports_select_alone() {
    let scratch = Scratch::new("report-determinism");
    let run = scratch.join("run");
    example_runs(&run);
    ok(whence(["report".to_string(), run.display().to_string(), "--out".into(), scratch.join("a").display().to_string()]));
    ok(whence(["report".to_string(), run.display().to_string(), "--out".into(), scratch.join("b").display().to_string()]));
    for name in ["index.html", "figures/position-profile.svg", "figures/position-profile.png", "figures/selection.svg"] {
        let a = std::fs::read(scratch.join(&format!("a/{name}"))).unwrap();
        let b = std::fs::read(scratch.join(&format!("b/{name}"))).unwrap();
        assert!(a == b, "{name} differs between two identical runs");
    }
    // The select output file alone: only its figures.
    let out = scratch.join("select-only");
    ok(whence(["report".to_string(), run.join("selected.jsonl").display().to_string(), "--out".into(), out.display().to_string()]));
    assert_eq!(
        scratch.listing("select-only/figures"),
        vec!["select-beta-search.png", "select-beta-search.svg", "selection.png", "selection.svg"]
    );
}

#[test]
fn bad_report_inputs_exit_2_and_say_why() {
    let scratch = Scratch::new("report-bad");
    let output = whence(["report".to_string(), scratch.join("nope").display().to_string()]);
    assert_eq!(output.status.code(), Some(2));
    assert!(stderr(&output).contains("nope` does not exist"), "{}", stderr(&output));

    std::fs::create_dir_all(scratch.join("empty")).unwrap();
    let output = whence(["report".to_string(), scratch.join("empty").display().to_string()]);
    assert_eq!(output.status.code(), Some(2));
    assert!(stderr(&output).contains("no whence output found in"), "{}", stderr(&output));
    assert!(stderr(&output).contains("expected summary.json (from `whence trace`)"), "{}", stderr(&output));

    let run = scratch.join("run");
    let mut trace: Vec<String> = vec!["trace".into(), example("records.jsonl").display().to_string()];
    trace.extend(example_scorers());
    trace.extend(["--out".into(), run.display().to_string()]);
    ok(whence(&trace));
    let output = whence(["report".to_string(), run.display().to_string(), "--trajectory".into(), "t999".into()]);
    assert_eq!(output.status.code(), Some(2));
    assert!(stderr(&output).contains("trajectory `t999` is not in"), "{}", stderr(&output));
    assert!(!run.join("report/index.html").exists(), "a failed report writes nothing");

    let output = whence(["report".to_string(), run.display().to_string(), "--png-scale".into(), "100".into()]);
    assert_eq!(output.status.code(), Some(2));
    assert!(stderr(&output).contains("invalid scale `100`; it must be a number from 0.5 to 8"), "{}", stderr(&output));
}

/// Whitespace-separated tokens of `text` (each with its trailing spaces) as
/// a `file:` scorer line, every token at `logprob`.
fn scorer_line(id: &str, text: &str, logprob: impl Fn(usize) -> f64) -> String {
    let mut offsets = Vec::new();
    let bytes = text.as_bytes();
    let mut start = 0;
    while start < bytes.len() {
        let mut end = start;
        while end < bytes.len() && !bytes[end].is_ascii_whitespace() {
            end += 1;
        }
        while end < bytes.len() && bytes[end].is_ascii_whitespace() {
            end += 1;
        }
        offsets.push([start, end]);
        start = end;
    }
    let logprobs: Vec<f64> = (0..offsets.len()).map(&logprob).collect();
    serde_json::json!({"id": id, "offsets": offsets, "logprobs": logprobs}).to_string()
}

#[test]
fn hostile_text_is_shown_literally_and_never_runs() {
    let payloads = [
        "<script>document.documentElement.setAttribute('data-pwned','script')</script>",
        "</style><style>body{display:none}</style>",
        "\"><img src=x onerror=\"document.documentElement.setAttribute('data-pwned','img')\">",
        "</textarea><svg onload=\"document.documentElement.setAttribute('data-pwned','svg')\"></svg>",
        "</script><!-- & &amp; \u{2028} done",
    ];
    let scratch = Scratch::new("report-hostile");
    let ids = ["h1\"><img src=x onerror=alert(1)>", "h2</script>", "h3"];
    let mut records = String::new();
    let (mut teacher, mut student, mut distilled) = (String::new(), String::new(), String::new());
    for (n, id) in ids.iter().enumerate() {
        let response = format!(
            "<think>\nFirst we look at {}. Wait, check {} again. Then {} is fine.\n</think>\n\nSo the answer is {}.",
            payloads[n % payloads.len()],
            payloads[(n + 1) % payloads.len()],
            payloads[(n + 2) % payloads.len()],
            payloads[(n + 3) % payloads.len()]
        );
        records.push_str(
            &serde_json::json!({"id": id, "prompt": format!("question {n}"), "response": response, "correct": n % 2 == 0}).to_string(),
        );
        records.push('\n');
        teacher.push_str(&(scorer_line(id, &response, |i| -0.05 * (i % 7) as f64) + "\n"));
        student.push_str(&(scorer_line(id, &response, |i| -0.4 * (i % 3) as f64) + "\n"));
        distilled.push_str(&(scorer_line(id, &response, |i| -0.1 * (i % 5) as f64) + "\n"));
    }
    let run = scratch.join("run");
    ok(whence([
        "trace".to_string(),
        scratch.write("records.jsonl", &records).display().to_string(),
        "--teacher".into(),
        format!("file:{}", scratch.write("t.jsonl", &teacher).display()),
        "--student".into(),
        format!("file:{}", scratch.write("s.jsonl", &student).display()),
        "--distilled".into(),
        format!("file:{}", scratch.write("d.jsonl", &distilled).display()),
        "--out".into(),
        run.display().to_string(),
        "--beta".into(),
        "0.1".into(),
    ]));
    ok(whence(["report", &run.display().to_string()]));
    let page = run.join("report/index.html");
    let html = std::fs::read_to_string(&page).unwrap();
    // No payload reaches the file as markup.
    for needle in ["<script>document", "<img", "<svg onload", "</textarea>", "<style>body", "<!--"] {
        assert!(!html.contains(needle), "the page holds `{needle}` unescaped");
    }
    // The first trajectory's figure file has a safe name.
    assert!(
        run.join("report/figures/trajectory-h1___img_src_x_onerror_alert_1__.svg").is_file(),
        "{:?}",
        scratch.listing("run/report/figures")
    );

    let Some(chromium) = chromium() else { return };
    let (dom, _) = rendered_dom(&chromium, &scratch, &page, true);
    // A payload that ran would have set the attribute (the text only names it in quotes).
    let html_tag = &dom[dom.find("<html").unwrap()..];
    let html_tag = &html_tag[..html_tag.find('>').unwrap()];
    assert!(!html_tag.contains("data-pwned") && !dom.contains("data-pwned=\""), "a payload ran: {html_tag}");
    // No payload became an element (as text it is serialised `&lt;img …`).
    for tag in ["<img", "<textarea", "<svg onload", "<style>body"] {
        assert!(!dom.contains(tag), "the page has a `{tag}` element");
    }
    // The literal text shows: as text nodes, serialised escaped.
    for literal in [
        "&lt;script&gt;document.documentElement.setAttribute('data-pwned','script')&lt;/script&gt;",
        "&lt;/style&gt;&lt;style&gt;body{display:none}&lt;/style&gt;",
        "\"&gt;&lt;img src=x onerror=\"document.documentElement.setAttribute('data-pwned','img')\"&gt;",
        "&lt;/textarea&gt;&lt;svg onload=",
        "&lt;/script&gt;&lt;!-- &amp; &amp;amp;",
        "h1\"&gt;&lt;img src=x onerror=alert(1)&gt;",
        "h2&lt;/script&gt;",
    ] {
        assert!(dom.contains(literal), "the text `{literal}` is not shown literally");
    }
    let shot = screenshot(&chromium, &scratch, &page, 5_000, "report-hostile.png");
    eprintln!("screenshot: {}", shot.display());
}

/// The scale check of the issue: a 10,000-trajectory run's report stays
/// under 25 MB and opens in under 3 s. Needs python3 (for the synthetic
/// generator) and Chromium; run with `cargo test -p whence-cli --test cli
/// report_scale -- --ignored --nocapture`.
#[test]
#[ignore]
fn report_scale_10k_trajectories() {
    let scratch = Scratch::new("report-scale");
    let data = scratch.join("data");
    let status = Command::new("python3")
        .arg(root().join("bench/python/make_synthetic.py"))
        .args(["--trajectories", "10000", "--seed", "1", "--quiet", "--out"])
        .arg(&data)
        .status()
        .expect("python3 runs");
    assert!(status.success());
    let run = scratch.join("run");
    let file = |name: &str| format!("file:{}", data.join(name).display());
    let started = Instant::now();
    ok(whence([
        "trace".to_string(),
        data.join("records.jsonl").display().to_string(),
        "--teacher".into(),
        file("teacher.jsonl"),
        "--student".into(),
        file("student.jsonl"),
        "--distilled".into(),
        file("distilled.jsonl"),
        "--out".into(),
        run.display().to_string(),
    ]));
    eprintln!("trace: {:.1} s", started.elapsed().as_secs_f64());
    let started = Instant::now();
    ok(whence(["report", &run.display().to_string()]));
    eprintln!("report: {:.1} s", started.elapsed().as_secs_f64());
    let page = run.join("report/index.html");
    let bytes = std::fs::metadata(&page).unwrap().len();
    eprintln!("index.html: {:.2} MB", bytes as f64 / 1e6);
    assert!(bytes < 25_000_000, "the report is {bytes} bytes");
    let Some(chromium) = chromium() else { return };
    // Real time: no virtual-time budget; Chromium dumps the DOM after the load event.
    let (dom, seconds) = rendered_dom(&chromium, &scratch, &page, false);
    let html_tag = &dom[dom.find("<html").unwrap()..];
    let html_tag = &html_tag[..html_tag.find('>').unwrap()];
    let attribute = |name: &str| -> Option<f64> { html_tag.split(&format!("{name}=\"")).nth(1)?.split('"').next()?.parse().ok() };
    let ready = attribute("data-ready-ms").expect("the script ran");
    eprintln!(
        "chromium: script done {ready} ms after navigation start, load event {:?} ms; whole headless run (browser start, load, dump) {seconds:.2} s",
        attribute("data-load-ms")
    );
    assert!(ready < 3000.0, "the page took {ready} ms to be ready ({seconds:.2} s in all)");
    if let Some(load) = attribute("data-load-ms") {
        assert!(load < 3000.0, "the page took {load} ms to load");
    }
    assert!(dom.contains("of 10000 trajectories)"), "every trajectory is browsable");
}
