//! The chat page in a real browser: headless Debian `chromium` driven by `chromedriver`
//! over the WebDriver JSON protocol loads the page from `serve` on 127.0.0.1, uploads a
//! synthetic PNG through the file input, asks a question, waits for the streamed answer,
//! checks it equals the API's greedy answer to the same request, and saves a screenshot to
//! `target/browser-test/chat.png`. At a phone's 390 x 844 the page must fit the width with
//! the chat input and send button on screen, and a file that is no image must be refused in
//! words (screenshot `target/browser-test/phone.png`).
//!
//! Without `/usr/bin/chromium` and `/usr/bin/chromedriver` the test is skipped, unless
//! `VLM_REQUIRE_BROWSER=1` (CI) makes that a failure.

mod common;

use std::net::TcpListener;
use std::path::Path;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use common::{data_url, png, Server};
use serde_json::{json, Value};

const CHROMIUM: &str = "/usr/bin/chromium";
const CHROMEDRIVER: &str = "/usr/bin/chromedriver";
/// The key WebDriver names element references with.
const ELEMENT: &str = "element-6066-11e4-a52e-4f735466cecf";
const QUESTION: &str = "What shape is in the picture?";
const FOLLOW_UP: &str = "And what colour is it?";
const MAX_TOKENS: usize = 12;

/// `chromedriver` on a free port; killed when dropped.
struct Driver {
    child: Child,
    base: String,
}

impl Driver {
    fn start() -> Self {
        let port = TcpListener::bind("127.0.0.1:0")
            .and_then(|l| l.local_addr())
            .expect("free port")
            .port();
        let child = Command::new(CHROMEDRIVER)
            .arg(format!("--port={port}"))
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .expect("start chromedriver");
        let driver = Self {
            child,
            base: format!("http://127.0.0.1:{port}"),
        };
        wait_until("chromedriver to be ready", Duration::from_secs(30), || {
            ureq::get(&format!("{}/status", driver.base)).call().ok()
        });
        driver
    }

    fn call(&self, method: &str, path: &str, body: Option<Value>) -> Value {
        let request = ureq::request(method, &format!("{}{path}", self.base));
        let result = match body {
            Some(body) => request
                .set("Content-Type", "application/json")
                .send_string(&body.to_string()),
            None => request.call(),
        };
        let response = match result {
            Ok(response) => response,
            Err(ureq::Error::Status(status, response)) => {
                let text = response.into_string().unwrap_or_default();
                panic!("WebDriver {method} {path}: {status} {text}");
            }
            Err(err) => panic!("WebDriver {method} {path}: {err}"),
        };
        let text = response.into_string().expect("WebDriver reply");
        let reply: Value = serde_json::from_str(&text).expect("WebDriver json");
        reply["value"].clone()
    }
}

impl Drop for Driver {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// A browser session; closed when dropped.
struct Session<'d> {
    driver: &'d Driver,
    id: String,
}

impl<'d> Session<'d> {
    fn new(driver: &'d Driver, profile: &Path) -> Self {
        let args = [
            "--headless",
            "--no-sandbox",
            "--disable-gpu",
            "--disable-quic",
            "--no-first-run",
            "--disable-background-networking",
            "--disable-component-update",
            "--disable-sync",
            "--window-size=1200,800",
        ];
        let mut args: Vec<String> = args.iter().map(|a| a.to_string()).collect();
        args.push(format!("--user-data-dir={}", profile.display()));
        let capabilities = json!({"capabilities": {"alwaysMatch": {
            "browserName": "chrome",
            "goog:chromeOptions": {"binary": CHROMIUM, "args": args},
        }}});
        let value = driver.call("POST", "/session", Some(capabilities));
        let id = value["sessionId"].as_str().expect("session id").to_string();
        Self { driver, id }
    }

    fn call(&self, method: &str, path: &str, body: Option<Value>) -> Value {
        let path = format!("/session/{}{path}", self.id);
        self.driver.call(method, &path, body)
    }

    fn element(&self, css: &str) -> String {
        let query = json!({"using": "css selector", "value": css});
        let found = self.call("POST", "/element", Some(query));
        found[ELEMENT]
            .as_str()
            .unwrap_or_else(|| panic!("element {css}: {found}"))
            .to_string()
    }

    fn type_into(&self, css: &str, text: &str) {
        let element = self.element(css);
        let path = format!("/element/{element}/value");
        self.call("POST", &path, Some(json!({"text": text})));
    }

    fn click(&self, css: &str) {
        let element = self.element(css);
        self.call(
            "POST",
            &format!("/element/{element}/click"),
            Some(json!({})),
        );
    }

    /// Loads `url`.
    fn open(&self, url: &str) {
        self.call("POST", "/url", Some(json!({ "url": url })));
    }

    /// Emulates a phone's screen: a viewport of `width` x `height` CSS pixels.
    fn set_viewport(&self, width: u32, height: u32) {
        let metrics = json!({"cmd": "Emulation.setDeviceMetricsOverride", "params": {
            "width": width, "height": height, "deviceScaleFactor": 1, "mobile": true,
        }});
        self.call("POST", "/goog/cdp/execute", Some(metrics));
    }

    fn script(&self, script: &str) -> Value {
        let body = json!({"script": script, "args": []});
        self.call("POST", "/execute/sync", Some(body))
    }
}

impl Drop for Session<'_> {
    fn drop(&mut self) {
        let path = format!("{}/session/{}", self.driver.base, self.id);
        let _ = ureq::delete(&path).call();
    }
}

/// Polls `probe` until it returns something, failing after `limit`.
fn wait_until<T>(what: &str, limit: Duration, mut probe: impl FnMut() -> Option<T>) -> T {
    let start = Instant::now();
    loop {
        if let Some(found) = probe() {
            return found;
        }
        assert!(start.elapsed() < limit, "timed out waiting for {what}");
        std::thread::sleep(Duration::from_millis(100));
    }
}

/// Whether the browser is installed; without it, a skip (or a failure when required).
fn browser_available() -> bool {
    if Path::new(CHROMIUM).is_file() && Path::new(CHROMEDRIVER).is_file() {
        return true;
    }
    let required = std::env::var("VLM_REQUIRE_BROWSER").is_ok_and(|v| v == "1");
    assert!(
        !required,
        "VLM_REQUIRE_BROWSER=1 but {CHROMIUM} or {CHROMEDRIVER} is missing: \
         apt-get install chromium chromium-driver"
    );
    eprintln!("skipped: install chromium chromium-driver (apt-get) to run the browser test");
    false
}

/// The API's greedy answer to what the page sends for `messages`.
fn api_answer(server: &Server, messages: Value) -> String {
    let body = json!({
        "model": "vlm",
        "stream": false,
        "temperature": 0,
        "top_p": 1,
        "max_tokens": MAX_TOKENS,
        "messages": messages,
    });
    server.answer(&body)
}

/// The text of the `n`-th answer on the page, once it is complete.
fn page_answer(session: &Session<'_>, n: usize) -> String {
    let script = format!(
        "const a = document.querySelectorAll('.message.assistant')[{n}]; \
         return a && a.dataset.done === 'true' ? a.textContent : null;"
    );
    wait_until("the streamed answer", Duration::from_secs(120), || {
        session.script(&script).as_str().map(str::to_string)
    })
}

/// Saves what the browser shows to `target/browser-test/NAME`.
fn screenshot(session: &Session<'_>, name: &str) {
    let shot = session.call("GET", "/screenshot", None);
    let shot = shot.as_str().expect("base64 png");
    let shot = base64::Engine::decode(&base64::engine::general_purpose::STANDARD, shot)
        .expect("screenshot base64");
    let dir = Path::new(env!("CARGO_MANIFEST_DIR")).join("target/browser-test");
    std::fs::create_dir_all(&dir).expect("screenshot dir");
    std::fs::write(dir.join(name), shot).expect("write screenshot");
}

/// Whether the element `css` lies wholly inside the viewport.
fn on_screen(session: &Session<'_>, css: &str) -> bool {
    let script = format!(
        "const r = document.querySelector('{css}').getBoundingClientRect(); \
         return r.width > 0 && r.height > 0 && r.left >= 0 && r.top >= 0 && \
         r.right <= window.innerWidth && r.bottom <= window.innerHeight;"
    );
    session.script(&script) == json!(true)
}

fn ask(session: &Session<'_>, question: &str) {
    session.type_into("#prompt", question);
    session.click("#send");
}

#[test]
fn the_page_uploads_an_image_and_streams_the_answer() {
    if !browser_available() {
        return;
    }
    let server = Server::start(&[]);
    let work = tempfile::tempdir().expect("tempdir");
    let image = png(96, 7);
    let image_path = work.path().join("shapes.png");
    std::fs::write(&image_path, &image).expect("write png");
    let driver = Driver::start();
    let session = Session::new(&driver, &work.path().join("profile"));

    session.open(&format!("{}/", server.base));
    session.type_into("#image-input", &image_path.display().to_string());
    wait_until("the preview", Duration::from_secs(10), || {
        session
            .script("return !document.getElementById('preview').hidden;")
            .as_bool()
            .filter(|&shown| shown)
    });
    let max_tokens = format!("document.getElementById('max-tokens').value = '{MAX_TOKENS}';");
    session.script(&max_tokens);
    ask(&session, QUESTION);
    let answer = page_answer(&session, 0);
    ask(&session, FOLLOW_UP);
    let follow_up = page_answer(&session, 1);
    let errors = session.script("return document.querySelectorAll('.message.error').length;");
    assert_eq!(errors, json!(0), "the page shows an error");

    screenshot(&session, "chat.png");

    assert!(!answer.trim().is_empty(), "a visible answer: {answer:?}");
    let first = json!({"role": "user", "content": [
        {"type": "image_url", "image_url": {"url": data_url(&image)}},
        {"type": "text", "text": QUESTION},
    ]});
    assert_eq!(
        answer,
        api_answer(&server, json!([first])),
        "page and API differ"
    );
    let conversation = json!([
        first,
        {"role": "assistant", "content": answer},
        {"role": "user", "content": FOLLOW_UP},
    ]);
    let expected = api_answer(&server, conversation);
    assert_eq!(
        follow_up, expected,
        "the second turn sends the whole conversation"
    );
}

#[test]
fn on_a_phone_the_chat_fits_and_a_bad_image_is_explained() {
    if !browser_available() {
        return;
    }
    let server = Server::start(&[]);
    let work = tempfile::tempdir().expect("tempdir");
    let not_an_image = work.path().join("notes.png");
    std::fs::write(&not_an_image, "a shopping list, not a picture").expect("write file");
    let driver = Driver::start();
    let session = Session::new(&driver, &work.path().join("profile"));
    session.set_viewport(390, 844);
    session.open(&format!("{}/", server.base));

    let width = session.script("return window.innerWidth;");
    assert_eq!(width, json!(390), "the phone's viewport");
    let overflow = session.script(
        "return document.documentElement.scrollWidth - document.documentElement.clientWidth;",
    );
    assert_eq!(overflow, json!(0), "the page scrolls sideways");
    assert!(
        on_screen(&session, "#prompt"),
        "the chat input is off screen"
    );
    assert!(
        on_screen(&session, "#send"),
        "the send button is off screen"
    );
    let folded = session.script("return document.getElementById('settings-box').open;");
    assert_eq!(folded, json!(false), "the settings start folded on a phone");

    session.type_into("#image-input", &not_an_image.display().to_string());
    let error = wait_until("the error message", Duration::from_secs(10), || {
        let script = "const e = document.querySelector('.message.error'); \
                      return e ? e.textContent : null;";
        session.script(script).as_str().map(str::to_string)
    });
    assert_eq!(error, "That file is not a JPEG or PNG image.");
    let hidden = session.script("return document.getElementById('preview').hidden;");
    assert_eq!(hidden, json!(true), "no preview of a file that is no image");
    screenshot(&session, "phone.png");
}
