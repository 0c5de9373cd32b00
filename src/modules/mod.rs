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

#[cfg(test)]
mod tests {
    use crate::plan::compile::test_plan;

    /// mysql, samba, sshd, rsync, tinc and nat64 render the same on both suites:
    /// what differs between bookworm and trixie for them (MariaDB 10.11/11.8, Samba
    /// 4.17/4.22, OpenSSH 9.2/10.0, …) does not reach their configuration, which the
    /// end-to-end tests run on trixie and ran on bookworm before. A rendering that
    /// starts to depend on the suite belongs in `Facts`, with a test per suite.
    #[test]
    fn suite_independent_modules_render_the_same_on_both_suites() {
        // Without DNS64: bind's recursion includes the suite's root hints (see bind's tests).
        let nat64 = "name = \"n\"\nbase = \"debian:trixie\"\n[network]\nipv4 = \"auto\"\nipv6 = \"auto\"\nnat = true\n\
                     [services.nat64]\nprefix = \"64:ff9b::/96\"\nipv4_pool = \"192.168.255.0/24\"\ndns64 = false\n";
        let specs = [
            include_str!("../../specs/mysql.toml"),
            include_str!("../../specs/samba.toml"),
            include_str!("../../specs/sshd.toml"),
            include_str!("../../specs/rsync.toml"),
            include_str!("../../specs/tinc.toml"),
            nat64,
        ];
        for text in specs {
            assert!(text.contains("\nbase = \"debian:trixie\"\n"), "{text}");
            let trixie = test_plan(text);
            let bookworm = test_plan(&text.replace("\nbase = \"debian:trixie\"\n", "\nbase = \"debian:bookworm\"\n"));
            assert_eq!(trixie.layer.packages, bookworm.layer.packages, "{}", trixie.name);
            assert_eq!(trixie.files, bookworm.files, "{}", trixie.name);
            assert_eq!(trixie.services, bookworm.services, "{}", trixie.name);
            assert_eq!(trixie.init, bookworm.init, "{}", trixie.name);
            assert_eq!(trixie.mounts, bookworm.mounts, "{}", trixie.name);
            assert_ne!(trixie.layer.base, bookworm.layer.base);
        }
    }
}
