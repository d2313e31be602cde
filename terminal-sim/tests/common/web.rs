//! A small HTTP client for the console's pages (`/console` on the admin port): one connection
//! per request, the cookies it was given kept, forms URL-encoded.

use std::net::SocketAddr;

use tokio::io::{AsyncReadExt as _, AsyncWriteExt as _};

/// An answer: status, headers (names lower case) and body.
#[derive(Debug, Clone)]
pub struct Answer {
    pub status: u16,
    pub headers: Vec<(String, String)>,
    pub body: String,
}

impl Answer {
    /// The first header of that (lower-case) name.
    pub fn header(&self, name: &str) -> Option<&str> {
        self.headers
            .iter()
            .find(|(n, _)| n == name)
            .map(|(_, v)| v.as_str())
    }

    /// The value of the first `name="csrf" value="…"` field of the page.
    pub fn csrf(&self) -> String {
        let after = self
            .body
            .split("name=\"csrf\" value=\"")
            .nth(1)
            .unwrap_or_else(|| panic!("no CSRF field in {}", self.body));
        after.split('"').next().unwrap().to_owned()
    }
}

/// A browser, roughly: the admin address, its cookies, and the `X-Forwarded-For` it sends.
pub struct Web {
    pub addr: SocketAddr,
    pub cookies: Vec<(String, String)>,
    pub forwarded_for: Option<String>,
}

/// `pairs` as `application/x-www-form-urlencoded`.
pub fn form(pairs: &[(&str, &str)]) -> String {
    let escape = |text: &str| {
        text.bytes()
            .map(|b| {
                if b.is_ascii_alphanumeric() || b"-_.~".contains(&b) {
                    char::from(b).to_string()
                } else {
                    format!("%{b:02X}")
                }
            })
            .collect::<String>()
    };
    pairs
        .iter()
        .map(|(k, v)| format!("{}={}", escape(k), escape(v)))
        .collect::<Vec<_>>()
        .join("&")
}

impl Web {
    pub fn new(addr: SocketAddr) -> Web {
        Web {
            addr,
            cookies: Vec::new(),
            forwarded_for: None,
        }
    }

    /// One request; the answer's cookies are kept (`Max-Age=0` drops one).
    pub async fn request(&mut self, method: &str, path: &str, body: Option<String>) -> Answer {
        let mut stream = tokio::net::TcpStream::connect(self.addr).await.unwrap();
        let mut head = format!("{method} {path} HTTP/1.1\r\nhost: t\r\nconnection: close\r\n");
        if !self.cookies.is_empty() {
            let jar: Vec<String> = self
                .cookies
                .iter()
                .map(|(k, v)| format!("{k}={v}"))
                .collect();
            head.push_str(&format!("cookie: {}\r\n", jar.join("; ")));
        }
        if let Some(address) = &self.forwarded_for {
            head.push_str(&format!("x-forwarded-for: {address}\r\n"));
        }
        let body = body.unwrap_or_default();
        if method == "POST" {
            head.push_str("content-type: application/x-www-form-urlencoded\r\n");
        }
        head.push_str(&format!("content-length: {}\r\n\r\n", body.len()));
        stream.write_all(head.as_bytes()).await.unwrap();
        stream.write_all(body.as_bytes()).await.unwrap();
        let mut bytes = Vec::new();
        stream.read_to_end(&mut bytes).await.unwrap();
        let text = String::from_utf8_lossy(&bytes).into_owned();
        let (head, body) = text.split_once("\r\n\r\n").unwrap();
        let mut lines = head.lines();
        let status: u16 = lines
            .next()
            .unwrap()
            .split(' ')
            .nth(1)
            .unwrap()
            .parse()
            .unwrap();
        let headers: Vec<(String, String)> = lines
            .filter_map(|line| line.split_once(':'))
            .map(|(k, v)| (k.trim().to_ascii_lowercase(), v.trim().to_owned()))
            .collect();
        for (_, value) in headers.iter().filter(|(k, _)| k == "set-cookie") {
            let pair = value.split(';').next().unwrap();
            let (name, content) = pair.split_once('=').unwrap();
            self.cookies.retain(|(k, _)| k != name);
            if !value.contains("Max-Age=0") {
                self.cookies.push((name.to_owned(), content.to_owned()));
            }
        }
        // A chunked body is read whole; its chunk sizes are left in, harmless for searches.
        Answer {
            status,
            headers,
            body: body.to_owned(),
        }
    }

    pub async fn get(&mut self, path: &str) -> Answer {
        self.request("GET", path, None).await
    }

    pub async fn post(&mut self, path: &str, pairs: &[(&str, &str)]) -> Answer {
        self.request("POST", path, Some(form(pairs))).await
    }

    /// Opens the sign-in page and posts `pairs` with its token.
    pub async fn sign_in_with(&mut self, pairs: &[(&str, &str)]) -> Answer {
        let page = self.get("/console/sign-in").await;
        assert_eq!(page.status, 200, "{page:?}");
        let csrf = page.csrf();
        let mut all = vec![("csrf", csrf.as_str())];
        all.extend_from_slice(pairs);
        self.post("/console/sign-in", &all).await
    }

    /// Signs in with a password; panics unless it worked.
    pub async fn sign_in(&mut self, name: &str, password: &str) {
        let answer = self
            .sign_in_with(&[("name", name), ("password", password)])
            .await;
        assert_eq!(answer.status, 303, "{answer:?}");
    }

    /// A page whose figures are computed off the request: asked again while it says they are
    /// being computed (as the page's own `Refresh` would), up to 10 s.
    pub async fn get_computed(&mut self, path: &str) -> Answer {
        for _ in 0..200 {
            let answer = self.get(path).await;
            if !answer.body.contains("id=\"computing\"") {
                return answer;
            }
            assert_eq!(answer.header("refresh"), Some("2"), "{answer:?}");
            tokio::time::sleep(std::time::Duration::from_millis(50)).await;
        }
        panic!("{path} is still being computed");
    }

    /// A page's CSRF token (from a signed-in page).
    pub async fn csrf(&mut self) -> String {
        self.get("/console/settings").await.csrf()
    }
}
