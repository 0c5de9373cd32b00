//! Layer identities: which cached layers a plan's root is made of.
//!
//! Invariant: pure. A layer's id is a hash of everything that goes into it (and of
//! the ids below it), so an unchanged base, package set and build steps always name
//! the same cached layer and any change names a new one: that is the whole rebuild
//! rule. `exec::build` makes the layers; this only names them.

use super::types::{BuildStep, Layer};
use sha2::{Digest, Sha256};

/// Bumped when the way layers are built changes, so old layers are not reused.
/// v2: bases list `<suite>-updates` and `<suite>-security`, package layers upgrade.
const BUILD_FORMAT: &str = "container-layer-v2";
/// Debian's mirror when the spec names none.
pub const DEFAULT_MIRROR: &str = "http://deb.debian.org/debian";
/// Debian's security mirror when the spec names none.
pub const DEFAULT_SECURITY_MIRROR: &str = "http://deb.debian.org/debian-security";
/// Where a base's apt sources are (deb822), in the layer.
pub const APT_SOURCES: &str = "etc/apt/sources.list.d/debian.sources";

/// The debootstrap base of a Debian layer stack.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct BaseSpec {
    pub suite: String,
    /// `<suite>` and `<suite>-updates` come from here.
    pub mirror: String,
    /// `<suite>-security` comes from here.
    pub security_mirror: String,
    pub arch: String,
}

/// The apt sources of a base (the file [`APT_SOURCES`], deb822): `<suite>` and
/// `<suite>-updates` from `mirror`, `<suite>-security` from `security_mirror`, so
/// every apt run in a layer over it gets the suite's fixes.
pub fn apt_sources(base: &BaseSpec) -> String {
    let BaseSpec { suite, mirror, security_mirror, .. } = base;
    format!(
        "# Written by container: debian:{suite} with its updates and security fixes.\n\
         Types: deb\nURIs: {mirror}\nSuites: {suite} {suite}-updates\nComponents: main\n\n\
         Types: deb\nURIs: {security_mirror}\nSuites: {suite}-security\nComponents: main\n"
    )
}

/// The layers of a plan's root, bottom first.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct LayerStack {
    pub base: BaseSpec,
    pub base_id: String,
    /// The package layer (packages and build steps); `None` for a bare base.
    pub top_id: Option<String>,
}

impl LayerStack {
    /// Layer ids, topmost first (the order overlayfs stacks them).
    pub fn ids(&self) -> Vec<String> {
        self.top_id.iter().cloned().chain(std::iter::once(self.base_id.clone())).collect()
    }
}

/// The Debian architecture this binary runs on (the default `arch`).
pub fn host_arch() -> &'static str {
    match std::env::consts::ARCH {
        "x86_64" => "amd64",
        "aarch64" => "arm64",
        "x86" => "i386",
        "arm" => "armhf",
        "powerpc64" => "ppc64el",
        "s390x" => "s390x",
        "riscv64" => "riscv64",
        other => other,
    }
}

fn short_hash(parts: &[&str]) -> String {
    let mut h = Sha256::new();
    for p in parts {
        h.update((p.len() as u64).to_le_bytes());
        h.update(p.as_bytes());
    }
    h.finalize().iter().take(8).map(|b| format!("{b:02x}")).collect()
}

/// The layer stack of a plan's `layer`, or `None` when it runs on the host's system.
pub fn stack(layer: &Layer) -> Option<LayerStack> {
    let suite = layer.base.strip_prefix("debian:")?;
    let base = BaseSpec {
        suite: suite.to_string(),
        mirror: layer.mirror.as_ref().map_or_else(|| DEFAULT_MIRROR.to_string(), |m| m.to_string()),
        security_mirror: layer
            .security_mirror
            .as_ref()
            .map_or_else(|| DEFAULT_SECURITY_MIRROR.to_string(), |m| m.to_string()),
        arch: layer.arch.as_ref().map_or_else(|| host_arch().to_string(), |a| a.to_string()),
    };
    // The sources file names both mirrors: any change to it is a new base.
    let sources = apt_sources(&base);
    let base_id =
        format!("base-{}", short_hash(&[BUILD_FORMAT, "minbase", &base.suite, &base.mirror, &base.arch, &sources]));
    let top_id = (!layer.packages.is_empty() || !layer.steps.is_empty()).then(|| {
        let packages: Vec<&str> = layer.packages.iter().map(String::as_str).collect();
        let steps = serde_json::to_string(&layer.steps).expect("build steps serialize");
        format!("pkg-{}", short_hash(&[BUILD_FORMAT, &base_id, &packages.join(" "), &steps]))
    });
    Some(LayerStack { base, base_id, top_id })
}

/// A one-line description of a build step for logs and `images`.
pub fn describe_step(step: &BuildStep) -> String {
    match step {
        BuildStep::Run(argv) => format!("run {}", argv.join(" ")),
        BuildStep::Fetch(f) => format!("fetch {} into {}", f.url, f.dest),
    }
}

/// One command of a layer's build, as `exec::build` runs it and `plan` shows it.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize)]
pub struct LayerCommand {
    /// A program of the layer and its arguments; a `fetch` is shown as
    /// `["fetch", url, "sha256=…", "into", dest, "strip=N"]` (the download and the
    /// unpacking run on the host, not in the layer).
    pub argv: Vec<String>,
    /// Whether it gets network (the host's): only the downloads from the mirror
    /// (and a fetch's download, which runs on the host).
    pub network: bool,
}

/// apt-get with the options every build uses, then `args`.
pub fn apt_argv(args: &[&str]) -> Vec<String> {
    // Retries: a mirror's transient error should not fail a build.
    let opts = ["apt-get", "-q", "-y", "-o", "APT::Sandbox::User=root", "-o", "Acquire::Retries=3"];
    opts.iter().chain(args).map(|s| s.to_string()).collect()
}

/// The commands of the base layer's build after debootstrap's first stage (which
/// runs on the host): its second stage, without network.
pub fn base_commands() -> Vec<LayerCommand> {
    vec![LayerCommand { argv: vec!["/debootstrap/debootstrap".into(), "--second-stage".into()], network: false }]
}

/// The apt-get install options of a package layer.
const INSTALL: [&str; 4] = ["install", "--no-install-recommends", "-o", "Dpkg::Options::=--force-confold"];

/// The apt-get upgrade options of a package layer (the base's packages get the
/// suite's updates and security fixes).
const UPGRADE: [&str; 3] = ["upgrade", "-o", "Dpkg::Options::=--force-confold"];

/// The commands of a package layer's build, in order: apt-get update (against the
/// base's sources: the suite, its updates and its security fixes), the upgrade of
/// the base's packages and then the packages' install, each as a download (network)
/// and its installation (dpkg and the maintainer scripts, no network), then each
/// build step (no network).
pub fn package_commands(layer: &Layer) -> Vec<LayerCommand> {
    let mut download: Vec<&str> = UPGRADE.to_vec();
    download.push("--download-only");
    let mut out = vec![
        LayerCommand { argv: apt_argv(&["update"]), network: true },
        LayerCommand { argv: apt_argv(&download), network: true },
        LayerCommand { argv: apt_argv(&UPGRADE), network: false },
    ];
    if !layer.packages.is_empty() {
        let mut download: Vec<&str> = INSTALL.to_vec();
        download.push("--download-only");
        let pk = layer.packages.iter().map(String::as_str);
        out.push(LayerCommand {
            argv: apt_argv(&download.into_iter().chain(pk.clone()).collect::<Vec<_>>()),
            network: true,
        });
        out.push(LayerCommand { argv: apt_argv(&INSTALL.into_iter().chain(pk).collect::<Vec<_>>()), network: false });
    }
    for s in &layer.steps {
        let argv = match s {
            BuildStep::Run(argv) => argv.clone(),
            BuildStep::Fetch(f) => vec![
                "fetch".into(),
                f.url.clone(),
                format!("sha256={}", f.sha256),
                "into".into(),
                f.dest.to_string(),
                format!("strip={}", f.strip),
            ],
        };
        // A fetch downloads on the host (curl), outside any layer.
        let network = matches!(s, BuildStep::Fetch(f) if f.url.starts_with("http"));
        out.push(LayerCommand { argv, network });
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::collections::BTreeSet;

    fn layer(base: &str, pk: &[&str]) -> Layer {
        Layer {
            base: base.parse().unwrap(),
            packages: pk.iter().map(|s| s.to_string()).collect::<BTreeSet<_>>(),
            ..Layer::default()
        }
    }

    #[test]
    fn host_has_no_layers() {
        assert_eq!(stack(&layer("host", &["x"])), None);
    }

    #[test]
    fn ids_follow_what_goes_into_a_layer() {
        let a = stack(&layer("debian:bookworm", &["caddy", "mariadb-server"])).unwrap();
        let b = stack(&layer("debian:bookworm", &["mariadb-server", "caddy"])).unwrap();
        assert_eq!(a, b, "package order does not matter (the set is sorted)");
        let c = stack(&layer("debian:bookworm", &["caddy"])).unwrap();
        assert_eq!(a.base_id, c.base_id, "same base");
        assert_ne!(a.top_id, c.top_id, "other packages");
        let d = stack(&layer("debian:trixie", &["caddy"])).unwrap();
        assert_ne!(d.base_id, c.base_id);
        assert_ne!(d.top_id, c.top_id, "a new base names a new package layer");
        let mut e = layer("debian:bookworm", &["caddy"]);
        e.mirror = Some("http://mirror.example/debian".parse().unwrap());
        assert_ne!(stack(&e).unwrap().base_id, c.base_id);
        let mut s = layer("debian:bookworm", &["caddy"]);
        s.security_mirror = Some("http://mirror.example/debian-security".parse().unwrap());
        let s = stack(&s).unwrap();
        assert_ne!(s.base_id, c.base_id, "the security mirror is part of the base");
        assert_ne!(s.top_id, c.top_id);
        let mut f = layer("debian:bookworm", &["caddy"]);
        f.steps.push(BuildStep::Run(vec!["true".into()]));
        assert_ne!(stack(&f).unwrap().top_id, c.top_id, "build steps are part of the layer");
        let bare = stack(&layer("debian:bookworm", &[])).unwrap();
        assert_eq!(bare.top_id, None);
        assert_eq!(bare.ids(), vec![bare.base_id.clone()]);
        assert!(a.base_id.starts_with("base-") && a.top_id.as_deref().unwrap().starts_with("pkg-"));
    }

    #[test]
    fn only_the_downloads_get_network() {
        let mut l = layer("debian:bookworm", &["less", "curl"]);
        l.steps.push(BuildStep::Run(vec!["useradd".into(), "bob".into()]));
        l.steps.push(BuildStep::Fetch(super::super::types::Fetch {
            url: "https://example.org/x.tar.gz".into(),
            sha256: crate::vocab::values::ShaSum::parse(&"ab".repeat(32)).unwrap(),
            dest: crate::vocab::values::AbsPath::parse("/opt/x").unwrap(),
            strip: 1,
        }));
        let cmds = package_commands(&l);
        let shown: Vec<(String, bool)> = cmds.iter().map(|c| (c.argv.join(" "), c.network)).collect();
        let apt = "apt-get -q -y -o APT::Sandbox::User=root -o Acquire::Retries=3";
        let install = "install --no-install-recommends -o Dpkg::Options::=--force-confold";
        let upgrade = "upgrade -o Dpkg::Options::=--force-confold";
        assert_eq!(
            shown,
            [
                (format!("{apt} update"), true),
                (format!("{apt} {upgrade} --download-only"), true),
                (format!("{apt} {upgrade}"), false),
                (format!("{apt} {install} --download-only curl less"), true),
                (format!("{apt} {install} curl less"), false),
                ("useradd bob".to_string(), false),
                (format!("fetch https://example.org/x.tar.gz sha256={} into /opt/x strip=1", "ab".repeat(32)), true),
            ]
        );
        let bare = package_commands(&layer("debian:bookworm", &[]));
        assert_eq!(bare.len(), 3, "only apt-get update and upgrade: {bare:?}");
        assert!(base_commands().iter().all(|c| !c.network), "debootstrap's second stage runs offline");
    }

    #[test]
    fn sources_list_the_suite_its_updates_and_its_security_fixes() {
        let bookworm = stack(&layer("debian:bookworm", &[])).unwrap();
        assert_eq!(
            apt_sources(&bookworm.base),
            "# Written by container: debian:bookworm with its updates and security fixes.\n\
             Types: deb\n\
             URIs: http://deb.debian.org/debian\n\
             Suites: bookworm bookworm-updates\n\
             Components: main\n\
             \n\
             Types: deb\n\
             URIs: http://deb.debian.org/debian-security\n\
             Suites: bookworm-security\n\
             Components: main\n"
        );
        let trixie = stack(&layer("debian:trixie", &[])).unwrap();
        assert_eq!(
            apt_sources(&trixie.base),
            "# Written by container: debian:trixie with its updates and security fixes.\n\
             Types: deb\n\
             URIs: http://deb.debian.org/debian\n\
             Suites: trixie trixie-updates\n\
             Components: main\n\
             \n\
             Types: deb\n\
             URIs: http://deb.debian.org/debian-security\n\
             Suites: trixie-security\n\
             Components: main\n"
        );
        let mut own = layer("debian:trixie", &[]);
        own.mirror = Some("https://mirror.example/debian".parse().unwrap());
        own.security_mirror = Some("file:///srv/security".parse().unwrap());
        assert_eq!(
            apt_sources(&stack(&own).unwrap().base),
            "# Written by container: debian:trixie with its updates and security fixes.\n\
             Types: deb\n\
             URIs: https://mirror.example/debian\n\
             Suites: trixie trixie-updates\n\
             Components: main\n\
             \n\
             Types: deb\n\
             URIs: file:///srv/security\n\
             Suites: trixie-security\n\
             Components: main\n"
        );
    }
}
