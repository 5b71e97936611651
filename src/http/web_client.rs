//! The web client: the video-calling page in `src/web/`, compiled into the binary and served at
//! `/` (its scripts, styles, icons and web app manifest under `/web/`), so the broker alone is a
//! working video phone, installable as an app. Its service worker is served at `/sw.js`, so that
//! its scope is the whole site.
//!
//! The files' names carry no version, so every response says `no-cache` with a strong ETag:
//! browsers keep a copy but revalidate it, and an unchanged file costs a bodiless 304. The
//! service worker is `src/web/sw.js` with this build's version and the shell's ETags put in
//! front of it, so every new build is a new worker with a new cache.
use actix_web::http::header::{self, EntityTag, IfNoneMatch};
use actix_web::web::Bytes;
use actix_web::{guard, web, HttpMessage, HttpRequest, HttpResponse};
use base64::Engine;
use sha2::{Digest, Sha256};

struct Asset {
    path: &'static str,
    content_type: &'static str,
    body: &'static [u8],
}

const HTML: &str = "text/html; charset=utf-8";
const JS: &str = "text/javascript; charset=utf-8";
const PNG: &str = "image/png";

const ASSETS: &[Asset] = &[
    Asset {
        path: "/",
        content_type: HTML,
        body: include_bytes!("../web/index.html"),
    },
    Asset {
        path: "/web/style.css",
        content_type: "text/css; charset=utf-8",
        body: include_bytes!("../web/style.css"),
    },
    Asset {
        path: "/web/app.js",
        content_type: JS,
        body: include_bytes!("../web/app.js"),
    },
    Asset {
        path: "/web/api.js",
        content_type: JS,
        body: include_bytes!("../web/api.js"),
    },
    Asset {
        path: "/web/realtime.js",
        content_type: JS,
        body: include_bytes!("../web/realtime.js"),
    },
    Asset {
        path: "/web/media-call.js",
        content_type: JS,
        body: include_bytes!("../web/media-call.js"),
    },
    Asset {
        path: "/web/ringtone.js",
        content_type: JS,
        body: include_bytes!("../web/ringtone.js"),
    },
    Asset {
        path: "/web/ui.js",
        content_type: JS,
        body: include_bytes!("../web/ui.js"),
    },
    Asset {
        path: "/web/screens.js",
        content_type: JS,
        body: include_bytes!("../web/screens.js"),
    },
    Asset {
        path: "/web/session.js",
        content_type: JS,
        body: include_bytes!("../web/session.js"),
    },
    Asset {
        path: "/web/contacts.js",
        content_type: JS,
        body: include_bytes!("../web/contacts.js"),
    },
    Asset {
        path: "/web/history.js",
        content_type: JS,
        body: include_bytes!("../web/history.js"),
    },
    Asset {
        path: "/web/calls.js",
        content_type: JS,
        body: include_bytes!("../web/calls.js"),
    },
    Asset {
        path: "/web/call-screen.js",
        content_type: JS,
        body: include_bytes!("../web/call-screen.js"),
    },
    Asset {
        path: "/web/devices.js",
        content_type: JS,
        body: include_bytes!("../web/devices.js"),
    },
    Asset {
        path: "/web/quality.js",
        content_type: JS,
        body: include_bytes!("../web/quality.js"),
    },
    Asset {
        path: "/web/notify.js",
        content_type: JS,
        body: include_bytes!("../web/notify.js"),
    },
    Asset {
        path: "/web/account.js",
        content_type: JS,
        body: include_bytes!("../web/account.js"),
    },
    Asset {
        path: "/web/push.js",
        content_type: JS,
        body: include_bytes!("../web/push.js"),
    },
    Asset {
        path: "/web/session-db.js",
        content_type: JS,
        body: include_bytes!("../web/session-db.js"),
    },
    Asset {
        path: "/web/install.js",
        content_type: JS,
        body: include_bytes!("../web/install.js"),
    },
    Asset {
        path: "/web/favicon.svg",
        content_type: "image/svg+xml",
        body: include_bytes!("../web/favicon.svg"),
    },
    Asset {
        path: "/web/manifest.webmanifest",
        content_type: "application/manifest+json",
        body: include_bytes!("../web/manifest.webmanifest"),
    },
    // Rendered from favicon.svg by tests/browser/render-icons.mjs.
    Asset {
        path: "/web/icon-192.png",
        content_type: PNG,
        body: include_bytes!("../web/icon-192.png"),
    },
    Asset {
        path: "/web/icon-512.png",
        content_type: PNG,
        body: include_bytes!("../web/icon-512.png"),
    },
    Asset {
        path: "/web/icon-maskable-192.png",
        content_type: PNG,
        body: include_bytes!("../web/icon-maskable-192.png"),
    },
    Asset {
        path: "/web/icon-maskable-512.png",
        content_type: PNG,
        body: include_bytes!("../web/icon-maskable-512.png"),
    },
    Asset {
        path: "/web/apple-touch-icon.png",
        content_type: PNG,
        body: include_bytes!("../web/apple-touch-icon.png"),
    },
];

/// The service worker's own code, served at `/sw.js` behind the constants it is built with.
const SERVICE_WORKER: &str = include_str!("../web/sw.js");
const SERVICE_WORKER_PATH: &str = "/sw.js";

/// Scripts, styles and media only from this origin (no inline script, so injected markup can't
/// run); the WebSocket and REST calls go to this origin too.
const CONTENT_SECURITY_POLICY: &str = "default-src 'self'; script-src 'self'; \
     style-src 'self'; img-src 'self' data:; media-src 'self' blob: mediastream:; \
     connect-src 'self'; object-src 'none'; base-uri 'none'; form-action 'self'; \
     frame-ancestors 'none'";

/// One route per file and one for the service worker, GET and HEAD. Each ETag (and the service
/// worker's text) is computed once per worker, at start-up.
pub fn configure(cfg: &mut web::ServiceConfig) {
    for asset in ASSETS {
        route(
            cfg,
            asset.path,
            asset.content_type,
            Bytes::from_static(asset.body),
        );
    }
    route(cfg, SERVICE_WORKER_PATH, JS, Bytes::from(service_worker()));
}

fn route(cfg: &mut web::ServiceConfig, path: &str, content_type: &'static str, body: Bytes) {
    let etag = EntityTag::new_strong(digest(&body));
    cfg.service(
        web::resource(path).route(
            web::route()
                .guard(guard::Any(guard::Get()).or(guard::Head()))
                .to(move |req: HttpRequest| {
                    let response = serve(content_type, &body, &etag, &req);
                    async move { response }
                }),
        ),
    );
}

/// `src/web/sw.js` behind `VERSION` (one digest of the whole shell and the worker's code) and
/// `SHELL` (every file's path and ETag, for the worker to check that what it caches is this
/// build's).
fn service_worker() -> String {
    let shell: Vec<(&str, String)> = ASSETS.iter().map(|a| (a.path, digest(a.body))).collect();
    let mut everything = Sha256::new();
    for (path, etag) in &shell {
        everything.update(path.as_bytes());
        everything.update(etag.as_bytes());
    }
    everything.update(SERVICE_WORKER.as_bytes());
    let version =
        base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(&everything.finalize()[..12]);
    let shell: serde_json::Map<String, serde_json::Value> = shell
        .into_iter()
        .map(|(path, etag)| (path.to_owned(), etag.into()))
        .collect();
    format!(
        "const VERSION = {};\nconst SHELL = {};\n{SERVICE_WORKER}",
        serde_json::Value::from(version),
        serde_json::Value::Object(shell),
    )
}

fn digest(body: &[u8]) -> String {
    let hash = Sha256::digest(body);
    base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(&hash[..12])
}

fn serve(content_type: &str, body: &Bytes, etag: &EntityTag, req: &HttpRequest) -> HttpResponse {
    let fresh = match req.get_header::<IfNoneMatch>() {
        Some(IfNoneMatch::Any) => true,
        Some(IfNoneMatch::Items(tags)) => tags.iter().any(|t| t.weak_eq(etag)),
        None => false,
    };
    let mut response = if fresh {
        HttpResponse::NotModified()
    } else {
        HttpResponse::Ok()
    };
    response
        .insert_header((header::CACHE_CONTROL, "no-cache"))
        .insert_header(header::ETag(etag.clone()));
    // nosniff, Referrer-Policy and X-Frame-Options come with every response (http::security).
    if content_type == HTML {
        response.insert_header((header::CONTENT_SECURITY_POLICY, CONTENT_SECURITY_POLICY));
    }
    if fresh {
        return response.finish();
    }
    response.content_type(content_type).body(body.clone())
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Every `/web/...` path and `./module.js` import in the served files, served itself: a file
    /// added to src/web/ but not to ASSETS would 404 only in a browser.
    #[test]
    fn every_file_the_page_refers_to_is_served() {
        let served: Vec<&str> = ASSETS.iter().map(|a| a.path).collect();
        let worker = (SERVICE_WORKER_PATH, SERVICE_WORKER.as_bytes());
        for (file, body) in ASSETS.iter().map(|a| (a.path, a.body)).chain([worker]) {
            let Ok(text) = std::str::from_utf8(body) else {
                continue;
            };
            let absolute = text.split("\"/web/").skip(1);
            let quoted = text.split("'/web/").skip(1);
            let relative = text.split("from './").skip(1);
            for rest in absolute.chain(quoted).chain(relative) {
                let name = rest.split(['"', '\'']).next().unwrap_or_default();
                let path = format!("/web/{}", name.trim_start_matches("/web/"));
                assert!(
                    served.contains(&path.as_str()),
                    "{file} refers to {path}, which is not served"
                );
            }
        }
    }

    /// The worker caches exactly the served files, each checked against its ETag.
    #[test]
    fn the_service_worker_names_every_file_of_the_shell_with_its_etag() {
        let worker = service_worker();
        let (head, code) = worker.split_once("\nconst SHELL = ").expect("a SHELL line");
        assert!(head.starts_with("const VERSION = \""), "{head}");
        let (shell, rest) = code.split_once('\n').expect("the worker's code");
        assert!(
            rest.starts_with("// The service worker"),
            "the code follows the constants"
        );
        let shell: serde_json::Map<String, serde_json::Value> =
            serde_json::from_str(shell.trim_end_matches(';')).expect("SHELL is JSON");
        assert_eq!(shell.len(), ASSETS.len());
        for asset in ASSETS {
            assert_eq!(shell[asset.path], digest(asset.body), "{}", asset.path);
        }
    }

    #[test]
    fn etags_change_with_content() {
        assert_ne!(digest(b"a"), digest(b"b"));
        assert_eq!(digest(b"a"), digest(b"a"));
    }
}
