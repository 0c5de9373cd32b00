//! Service modules: typed settings in, plan resources out.
//!
//! Invariant: modules are pure. `expand` lets a module ask other modules for what it
//! needs (wordpress asks mysql for a database, php for a pool, caddy for a site) by
//! editing the effective settings; `compile` then turns each module's settings into
//! plan resources through `Ctx`. No module touches the OS.
//!
//! Layering: a module owns its settings type (`services.<module>` of the spec, which
//! `spec::types::Spec` composes through [`Services`]) and emits the plan's data from
//! `vocab`; it imports only `vocab` and `diag`, never `spec`, `plan` or `script`
//! (its tests may compile whole plans). docs/ARCHITECTURE.md says how to add one.

pub mod bind;
pub mod caddy;
pub mod mysql;
pub mod nat64;
pub mod nginx;
pub mod owncloud;
pub mod php;
pub mod rsync;
pub mod samba;
pub mod sshd;
pub mod tinc;
pub mod web;
pub mod wordpress;

mod ctx;
pub use ctx::Ctx;

use crate::diag::Problem;
use schemars::JsonSchema;
use serde::{Deserialize, Serialize};

/// Service modules. Each key enables a module; an empty table enables it with defaults.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize, JsonSchema)]
pub struct Services {
    /// MariaDB server: databases, users and grants ensured on every apply.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub mysql: Option<mysql::MysqlSettings>,
    /// Caddy 2 web server: sites, redirects, rewrites, reverse proxies, PHP.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub caddy: Option<caddy::CaddySettings>,
    /// PHP-FPM of the base's suite (8.2 on bookworm, 8.4 on trixie): php.ini settings
    /// and pools; registers with caddy or nginx.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub php: Option<php::PhpSettings>,
    /// WordPress from the Debian package: one instance per site.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub wordpress: Option<wordpress::WordpressSettings>,
    /// ownCloud from a release tarball.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub owncloud: Option<owncloud::OwncloudSettings>,
    /// BIND 9 name server: zones, recursion, rate limiting, DNS64.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub bind: Option<bind::BindSettings>,
    /// Samba 4 file server: shares backed by volumes.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub samba: Option<samba::SambaSettings>,
    /// NAT64 with tayga: an IPv6 /96 prefix mapped onto an IPv4 pool.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub nat64: Option<nat64::Nat64Settings>,
    /// nginx web server: sites, reverse proxies, PHP.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub nginx: Option<nginx::NginxSettings>,
    /// OpenSSH server: key login, persistent host keys.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub sshd: Option<sshd::SshdSettings>,
    /// rsync daemon: modules with authenticated users.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub rsync: Option<rsync::RsyncSettings>,
    /// tinc 1.0 VPN: a node joined to peers.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub tinc: Option<tinc::TincSettings>,
}

/// Which web server serves sites that a module (wordpress, owncloud) brings.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "lowercase")]
pub enum WebServer {
    /// Caddy 2 (default).
    #[default]
    Caddy,
    /// nginx.
    Nginx,
}

impl Services {
    /// Let modules request what they need from each other. Order matters: apps
    /// first (they enable php, mysql, web servers), then php (it registers with the
    /// web servers), then nat64 (it tells bind about DNS64).
    pub fn expand(&mut self, problems: &mut Vec<Problem>) {
        if let Some(wp) = self.wordpress.clone() {
            wordpress::expand(&wp, self, problems);
        }
        if let Some(oc) = self.owncloud.clone() {
            owncloud::expand(&oc, self, problems);
        }
        if let Some(n) = self.nat64.clone() {
            nat64::expand(&n, self, problems);
        }
        // A site that runs PHP brings PHP-FPM with it.
        let sites = self.caddy.iter().flat_map(|c| &c.sites).chain(self.nginx.iter().flat_map(|n| &n.sites));
        if self.php.is_none() && sites.into_iter().any(|s| !s.php.is_off()) {
            self.php = Some(php::PhpSettings::default());
        }
    }

    /// Turn every enabled module into plan resources.
    pub fn compile(&self, cx: &mut Ctx) {
        macro_rules! each {
            ($($m:ident)*) => {$(
                if let Some(s) = &self.$m {
                    cx.enter(stringify!($m));
                    $m::compile(s, self, cx);
                }
            )*};
        }
        each!(mysql caddy php wordpress owncloud bind samba nat64 nginx sshd rsync tinc);
    }
}
