//! The web client: the video-calling page in `src/web/`, compiled into the binary and served at
//! `/` (its scripts and styles under `/web/`), so the broker alone is a working video phone.
//!
//! The files' names carry no version, so every response says `no-cache` with a strong ETag:
//! browsers keep a copy but revalidate it, and an unchanged file costs a bodiless 304.
use actix_web::http::header::{self, EntityTag, IfNoneMatch};
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
        path: "/web/favicon.svg",
        content_type: "image/svg+xml",
        body: include_bytes!("../web/favicon.svg"),
    },
];

/// Scripts, styles and media only from this origin (no inline script, so injected markup can't
/// run); the WebSocket and REST calls go to this origin too.
const CONTENT_SECURITY_POLICY: &str = "default-src 'self'; script-src 'self'; \
     style-src 'self'; img-src 'self' data:; media-src 'self' blob: mediastream:; \
     connect-src 'self'; object-src 'none'; base-uri 'none'; form-action 'self'; \
     frame-ancestors 'none'";

/// One route per file, GET and HEAD. Each ETag is computed once per worker, at start-up.
pub fn configure(cfg: &mut web::ServiceConfig) {
    for asset in ASSETS {
        let etag = EntityTag::new_strong(digest(asset.body));
        cfg.service(
            web::resource(asset.path).route(
                web::route()
                    .guard(guard::Any(guard::Get()).or(guard::Head()))
                    .to(move |req: HttpRequest| {
                        let response = serve(asset, &etag, &req);
                        async move { response }
                    }),
            ),
        );
    }
}

fn digest(body: &[u8]) -> String {
    let hash = Sha256::digest(body);
    base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(&hash[..12])
}

fn serve(asset: &Asset, etag: &EntityTag, req: &HttpRequest) -> HttpResponse {
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
    if asset.content_type == HTML {
        response.insert_header((header::CONTENT_SECURITY_POLICY, CONTENT_SECURITY_POLICY));
    }
    if fresh {
        return response.finish();
    }
    response.content_type(asset.content_type).body(asset.body)
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Every `/web/...` path and `./module.js` import in the served files, served itself: a file
    /// added to src/web/ but not to ASSETS would 404 only in a browser.
    #[test]
    fn every_file_the_page_refers_to_is_served() {
        let served: Vec<&str> = ASSETS.iter().map(|a| a.path).collect();
        for asset in ASSETS {
            let Ok(text) = std::str::from_utf8(asset.body) else {
                continue;
            };
            let absolute = text.split("\"/web/").skip(1);
            let relative = text.split("from './").skip(1);
            for rest in absolute.chain(relative) {
                let name = rest.split(['"', '\'']).next().unwrap_or_default();
                let path = format!("/web/{}", name.trim_start_matches("/web/"));
                assert!(
                    served.contains(&path.as_str()),
                    "{} refers to {path}, which is not served",
                    asset.path
                );
            }
        }
    }

    #[test]
    fn etags_change_with_content() {
        assert_ne!(digest(b"a"), digest(b"b"));
        assert_eq!(digest(b"a"), digest(b"a"));
    }
}
