//! The one HTTP client configuration every cloud client uses: rustls with the system roots plus
//! the profile's extra CA, and `*.localhost` resolved to loopback for the local cloud.

use super::profile::CloudProfile;
use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

/// Resolves `localhost` and `*.localhost` to 127.0.0.1 (RFC 6761); everything else fails, so a
/// local profile can never reach another host by accident.
struct Loopback;

impl reqwest::dns::Resolve for Loopback {
    fn resolve(&self, name: reqwest::dns::Name) -> reqwest::dns::Resolving {
        let ok = name.as_str() == "localhost" || name.as_str().ends_with(".localhost") || name.as_str() == "127.0.0.1";
        let name = name.as_str().to_string();
        Box::pin(async move {
            if ok {
                let addrs: reqwest::dns::Addrs = Box::new(std::iter::once(SocketAddr::from(([127, 0, 0, 1], 0))));
                Ok(addrs)
            } else {
                Err(format!("{name} is not a loopback name; the local profile reaches only *.localhost").into())
            }
        })
    }
}

/// Builds the client for `profile`.
pub fn client(profile: &CloudProfile) -> Result<reqwest::Client, reqwest::Error> {
    let mut builder = reqwest::Client::builder()
        .connect_timeout(Duration::from_secs(10))
        .timeout(Duration::from_secs(120))
        .user_agent(concat!("kmsflow/", env!("CARGO_PKG_VERSION")));
    if let Some(pem) = &profile.extra_ca_pem {
        builder = builder.add_root_certificate(reqwest::Certificate::from_pem(pem.as_bytes())?);
    }
    if profile.loopback_names {
        builder = builder.dns_resolver(Arc::new(Loopback));
    }
    builder.build()
}
