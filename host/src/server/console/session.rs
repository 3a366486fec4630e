//! Who is using the console: a sign-in with the admin token or a shop's
//! key opens a session named by a random cookie (HttpOnly,
//! SameSite=Strict, Secure when the request came over HTTPS through a
//! proxy); each session has its own CSRF token, which every form carries
//! and every POST checks. Sessions live in memory: a restart signs
//! everyone out. The language is a cookie of its own.

use super::error::ConsoleError;
use super::text::Lang;
use crate::app::{App, KeyOwner, Shop};
use axum::extract::{FromRequestParts, RawPathParams};
use axum::http::request::Parts;
use axum::http::{HeaderMap, HeaderValue, header};
use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

/// The session cookie.
pub const SESSION_COOKIE: &str = "kefu_session";
/// The sign-in form's CSRF cookie (double submit: there is no session
/// yet).
pub const SIGN_IN_COOKIE: &str = "kefu_sign_in";
/// The language cookie.
pub const LANG_COOKIE: &str = "kefu_lang";
/// How long a session lasts without a new sign-in.
pub const SESSION_TTL: Duration = Duration::from_secs(12 * 3600);
/// Most sessions kept at once; the oldest go first.
const MAX_SESSIONS: usize = 10_000;

/// One signed-in user.
#[derive(Clone, Debug)]
pub struct Session {
    pub owner: KeyOwner,
    /// What every form of this session carries.
    pub csrf: String,
    expires: Instant,
}

/// The sessions of this process, by the SHA-256 of their cookie.
#[derive(Default)]
pub struct Sessions {
    map: Mutex<HashMap<[u8; 32], Session>>,
}

impl Sessions {
    /// A new session for `owner`: its cookie value and itself.
    pub fn open(&self, owner: KeyOwner) -> (String, Session) {
        let token = random_hex(32);
        let session = Session {
            owner,
            csrf: random_hex(16),
            expires: Instant::now() + SESSION_TTL,
        };
        let mut map = self.map.lock().expect("sessions");
        let now = Instant::now();
        map.retain(|_, s| s.expires > now);
        if map.len() >= MAX_SESSIONS
            && let Some(oldest) = map.iter().min_by_key(|(_, s)| s.expires).map(|(k, _)| *k)
        {
            map.remove(&oldest);
        }
        map.insert(digest(&token), session.clone());
        (token, session)
    }

    /// The live session a cookie names.
    pub fn get(&self, token: &str) -> Option<Session> {
        let map = self.map.lock().expect("sessions");
        map.get(&digest(token))
            .filter(|s| s.expires > Instant::now())
            .cloned()
    }

    pub fn close(&self, token: &str) {
        self.map.lock().expect("sessions").remove(&digest(token));
    }
}

/// `bytes` random bytes from the operating system, as hex.
pub fn random_hex(bytes: usize) -> String {
    let mut buf = vec![0u8; bytes];
    getrandom::fill(&mut buf).expect("the operating system's random source");
    hex::encode(buf)
}

/// The value of cookie `name`, if the request has it.
pub fn cookie<'a>(headers: &'a HeaderMap, name: &str) -> Option<&'a str> {
    headers
        .get_all(header::COOKIE)
        .iter()
        .filter_map(|v| v.to_str().ok())
        .flat_map(|v| v.split(';'))
        .filter_map(|pair| pair.trim().split_once('='))
        .find(|(n, _)| *n == name)
        .map(|(_, v)| v)
}

/// A `Set-Cookie` value for the console's paths: HttpOnly and
/// SameSite=Strict always, Secure when the request came over HTTPS.
pub fn set_cookie(headers: &HeaderMap, name: &str, value: &str, max_age: u64) -> HeaderValue {
    let secure = headers
        .get("x-forwarded-proto")
        .and_then(|v| v.to_str().ok())
        .is_some_and(|p| p.eq_ignore_ascii_case("https"));
    let text = format!(
        "{name}={value}; Path=/console; Max-Age={max_age}; HttpOnly; SameSite=Strict{}",
        if secure { "; Secure" } else { "" }
    );
    HeaderValue::from_str(&text).expect("cookie text is ASCII")
}

/// Check a form's CSRF token against the expected one (no early exit).
pub fn check_csrf(expected: &str, given: &str) -> Result<(), ConsoleError> {
    let same = expected.len() == given.len()
        && expected
            .bytes()
            .zip(given.bytes())
            .fold(0u8, |acc, (a, b)| acc | (a ^ b))
            == 0;
    match same && !expected.is_empty() {
        true => Ok(()),
        false => Err(ConsoleError::Csrf),
    }
}

/// The language a request asked for (any page, signed in or not).
pub struct Language(pub Lang);

impl<S: Send + Sync> FromRequestParts<S> for Language {
    type Rejection = std::convert::Infallible;

    async fn from_request_parts(parts: &mut Parts, _: &S) -> Result<Self, Self::Rejection> {
        Ok(Language(Lang::from_code(cookie(
            &parts.headers,
            LANG_COOKIE,
        ))))
    }
}

/// A signed-in user and the language of the page.
pub struct Signed {
    pub session: Session,
    pub lang: Lang,
    /// The session cookie's value.
    pub token: String,
}

impl FromRequestParts<Arc<App>> for Signed {
    type Rejection = ConsoleError;

    async fn from_request_parts(parts: &mut Parts, _: &Arc<App>) -> Result<Self, ConsoleError> {
        let lang = Lang::from_code(cookie(&parts.headers, LANG_COOKIE));
        let sessions = parts
            .extensions
            .get::<Arc<Sessions>>()
            .expect("the console router adds its sessions")
            .clone();
        let token = cookie(&parts.headers, SESSION_COOKIE).unwrap_or_default();
        match sessions.get(token) {
            Some(session) => Ok(Signed {
                session,
                lang,
                token: token.to_string(),
            }),
            None => Err(ConsoleError::SignIn {
                next: parts.uri.path().to_string(),
            }),
        }
    }
}

/// A signed-in user on a page of one shop they may see.
pub struct ShopView {
    pub signed: Signed,
    pub shop: Arc<Shop>,
}

impl FromRequestParts<Arc<App>> for ShopView {
    type Rejection = ConsoleError;

    async fn from_request_parts(parts: &mut Parts, app: &Arc<App>) -> Result<Self, ConsoleError> {
        let signed = Signed::from_request_parts(parts, app).await?;
        let lang = signed.lang;
        let params = RawPathParams::from_request_parts(parts, app)
            .await
            .map_err(|_| ConsoleError::NotFound(lang))?;
        let id = params
            .iter()
            .find(|(name, _)| *name == "shop")
            .map(|(_, v)| v.to_string())
            .unwrap_or_default();
        // A shop key learns nothing of other shops, not even whether
        // they exist.
        if !signed.session.owner.opens(&id) {
            return Err(ConsoleError::Forbidden(lang));
        }
        let shop = app.shop(&id).ok_or(ConsoleError::NotFound(lang))?;
        Ok(ShopView { signed, shop })
    }
}

/// What the session map keys a cookie by: its SHA-256, so that the map
/// holds no usable cookie.
fn digest(token: &str) -> [u8; 32] {
    use sha2::Digest;
    sha2::Sha256::digest(token.as_bytes()).into()
}
