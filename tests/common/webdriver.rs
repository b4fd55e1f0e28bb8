//! Just enough of the W3C WebDriver protocol, spoken to a real `chromedriver` with awc, to
//! drive headless Chromium in the browser tests: open a page, find elements, click, type,
//! run a script, take a screenshot.

use std::net::TcpListener;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use base64::Engine;
use serde_json::{json, Value};

/// The key W3C WebDriver uses for element references.
const ELEMENT: &str = "element-6066-11e4-a52e-4f735466cecf";

/// The Chromium binary (`LB_CHROMIUM` overrides Debian's path).
fn chromium() -> PathBuf {
    std::env::var_os("LB_CHROMIUM")
        .map_or_else(|| PathBuf::from("/usr/bin/chromium"), PathBuf::from)
}

/// The chromedriver command (`LB_CHROMEDRIVER` overrides the one on `PATH`).
fn chromedriver() -> PathBuf {
    std::env::var_os("LB_CHROMEDRIVER").map_or_else(|| PathBuf::from("chromedriver"), PathBuf::from)
}

/// What is missing for the browser tests, if anything.
pub fn missing() -> Option<String> {
    let driver = chromedriver();
    let on_path = |name: &Path| {
        if name.components().count() > 1 {
            return name.is_file();
        }
        std::env::var_os("PATH")
            .is_some_and(|paths| std::env::split_paths(&paths).any(|dir| dir.join(name).is_file()))
    };
    if !on_path(&driver) {
        return Some(format!("{} not found", driver.display()));
    }
    let browser = chromium();
    (!browser.is_file()).then(|| format!("{} not found", browser.display()))
}

/// Whether to run the browser tests: yes when Chromium and chromedriver are there. Without
/// them a local run skips with one line on stderr (past the test harness's capture); with
/// `CI` set it fails, since CI must run them.
pub fn required_or_skip(test: &str) -> bool {
    let Some(missing) = missing() else {
        return true;
    };
    if std::env::var_os("CI").is_some() {
        panic!("{test}: {missing}; CI runs the browser tests (.ci/run installs chromium and chromium-driver)");
    }
    let line =
        format!("skipped {test}: {missing}; to run it: apt-get install chromium chromium-driver\n");
    // Straight to the process's stderr: the harness captures eprintln! of passing tests.
    let _ = std::io::Write::write_all(&mut std::io::stderr(), line.as_bytes());
    false
}

/// A chromedriver process and one browser session on it.
pub struct Browser {
    driver: Child,
    base: String,
    client: awc::Client,
}

impl Browser {
    /// Starts chromedriver on a free port and a headless Chromium session. Panics with the
    /// set-up step when either is missing (see the README: chromium and chromium-driver).
    pub async fn start() -> Self {
        let port = TcpListener::bind("127.0.0.1:0")
            .expect("bind")
            .local_addr()
            .expect("addr")
            .port();
        let driver = Command::new(chromedriver())
            .arg(format!("--port={port}"))
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .expect("chromedriver is not installed: apt-get install chromium chromium-driver");
        let client = awc::Client::builder()
            .timeout(Duration::from_secs(60))
            .finish();
        let mut browser = Self {
            driver,
            base: format!("http://127.0.0.1:{port}"),
            client,
        };
        let until = Instant::now() + Duration::from_secs(20);
        while browser
            .client
            .get(format!("{}/status", browser.base))
            .send()
            .await
            .is_err()
        {
            assert!(Instant::now() < until, "chromedriver did not start");
            actix_rt::time::sleep(Duration::from_millis(50)).await;
        }
        let profile = tempfile::tempdir().expect("tempdir").keep();
        let capabilities = json!({"capabilities": {"alwaysMatch": {
            "browserName": "chrome",
            "goog:chromeOptions": {
                "binary": chromium(),
                "args": ["--headless", "--no-sandbox", "--disable-gpu", "--disable-quic",
                         "--no-first-run", "--disable-background-networking",
                         "--disable-component-update", "--disable-sync",
                         "--window-size=1280,1400",
                         format!("--user-data-dir={}", profile.display())]
            }
        }}});
        let session = browser.call("POST", "/session", Some(capabilities)).await;
        let id = session["sessionId"]
            .as_str()
            .expect("session id")
            .to_owned();
        browser.base = format!("{}/session/{id}", browser.base);
        browser
    }

    async fn call(&self, method: &str, path: &str, body: Option<Value>) -> Value {
        let url = format!("{}{path}", self.base);
        let method = actix_web::http::Method::from_bytes(method.as_bytes()).expect("method");
        let request = self.client.request(method, url);
        let mut response = match body {
            Some(body) => request.send_json(&body).await,
            None => request.send().await,
        }
        .expect("webdriver request");
        let value: Value = response
            .json()
            .limit(64 << 20)
            .await
            .expect("webdriver JSON");
        assert!(
            value["value"].get("error").is_none(),
            "webdriver {path}: {}",
            value["value"]
        );
        value["value"].clone()
    }

    pub async fn open(&self, url: &str) {
        self.call("POST", "/url", Some(json!({"url": url}))).await;
    }

    /// Runs `script` in the page (it may `return` a value); `args` are its `arguments`.
    pub async fn script(&self, script: &str, args: Value) -> Value {
        self.call(
            "POST",
            "/execute/sync",
            Some(json!({"script": script, "args": args})),
        )
        .await
    }

    /// The first element matching `css`, if any.
    pub async fn find(&self, css: &str) -> Option<String> {
        let found = self
            .call(
                "POST",
                "/elements",
                Some(json!({"using": "css selector", "value": css})),
            )
            .await;
        found
            .as_array()?
            .first()?
            .get(ELEMENT)?
            .as_str()
            .map(str::to_owned)
    }

    /// Waits until an element matches `css`, then clicks it as a user would.
    /// Clicks the element matching `css`. Found and clicked in one script turn of the page, so
    /// a re-render between finding and clicking (the cards are redrawn on every event) cannot
    /// leave a stale reference.
    pub async fn click(&self, css: &str) {
        self.wait_for(css).await;
        let clicked = self
            .script(
                "const e = document.querySelector(arguments[0]); if (e) e.click(); return !!e;",
                json!([css]),
            )
            .await;
        assert_eq!(clicked, json!(true), "nothing to click at {css}");
    }

    /// Types `text` into the element matching `css`.
    pub async fn type_into(&self, css: &str, text: &str) {
        let element = self.wait_for(css).await;
        self.call(
            "POST",
            &format!("/element/{element}/clear"),
            Some(json!({})),
        )
        .await;
        self.call(
            "POST",
            &format!("/element/{element}/value"),
            Some(json!({"text": text})),
        )
        .await;
    }

    async fn wait_for(&self, css: &str) -> String {
        let until = Instant::now() + Duration::from_secs(10);
        loop {
            if let Some(element) = self.find(css).await {
                return element;
            }
            assert!(Instant::now() < until, "no element {css}");
            actix_rt::time::sleep(Duration::from_millis(100)).await;
        }
    }

    /// Polls `script` (returning a boolean) until true, or fails after `deadline` naming `what`.
    pub async fn wait_until(&self, what: &str, deadline: Duration, script: &str) {
        let until = Instant::now() + deadline;
        loop {
            if self.script(script, json!([])).await == json!(true) {
                return;
            }
            assert!(Instant::now() < until, "timed out waiting for {what}");
            actix_rt::time::sleep(Duration::from_millis(100)).await;
        }
    }

    /// Resizes the browser window (CSS pixels).
    pub async fn resize(&self, width: u32, height: u32) {
        self.call(
            "POST",
            "/window/rect",
            Some(json!({"width": width, "height": height})),
        )
        .await;
    }

    /// Saves a PNG of the window.
    pub async fn screenshot(&self, path: &Path) {
        let data = self.call("GET", "/screenshot", None).await;
        let png = base64::engine::general_purpose::STANDARD
            .decode(data.as_str().expect("base64"))
            .expect("decode");
        if let Some(parent) = path.parent() {
            std::fs::create_dir_all(parent).expect("screenshot folder");
        }
        std::fs::write(path, png).expect("write screenshot");
    }

    pub async fn quit(mut self) {
        let _ = self.client.delete(self.base.clone()).send().await;
        let _ = self.driver.kill();
        let _ = self.driver.wait();
    }
}
