//! Who is calling: session tokens, password hashing, login throttling and the extractor that
//! turns `Authorization: Bearer <token>` into an [`Identity`].
pub mod identity;
pub mod login_limiter;
pub mod password;
pub mod token;

pub use identity::Identity;
