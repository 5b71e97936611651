//! The VAPID key pair (RFC 8292) that signs every push request: given by
//! `--vapid-private-key`, or generated on first start and kept in the `settings` table, like
//! the TURN secret, so browsers' subscriptions (made for its public key) survive restarts.
use crate::config::Config;
use crate::db::{self, Db};
use crate::error::StartupError;
use base64::prelude::{Engine, BASE64_URL_SAFE_NO_PAD};
use web_push_native::jwt_simple::algorithms::{ECDSAP256PublicKeyLike, ES256KeyPair};

/// Where a generated private key is kept in the `settings` table.
const KEY_SETTING: &str = "vapid_private_key";

pub struct Vapid {
    pub key: ES256KeyPair,
    /// The uncompressed public point, base64url: `applicationServerKey` for the browser.
    pub public_key: String,
    /// The `sub` claim: the operator's contact.
    pub subject: String,
}

impl Vapid {
    pub async fn load(config: &Config, db: &Db) -> Result<Self, StartupError> {
        let encoded = match &config.vapid_private_key {
            Some(key) => key.clone(),
            None => {
                let generated = BASE64_URL_SAFE_NO_PAD.encode(ES256KeyPair::generate().to_bytes());
                db.run(move |conn| db::settings::get_or_insert(conn, KEY_SETTING, &generated))
                    .await
                    .map_err(StartupError::Database)?
            }
        };
        let key = BASE64_URL_SAFE_NO_PAD
            .decode(encoded.trim_end_matches('='))
            .ok()
            .and_then(|bytes| ES256KeyPair::from_bytes(&bytes).ok())
            .ok_or(StartupError::VapidKey)?;
        let public_key =
            BASE64_URL_SAFE_NO_PAD.encode(key.public_key().public_key().to_bytes_uncompressed());
        Ok(Self {
            key,
            public_key,
            subject: config.vapid_subject.clone(),
        })
    }
}
