//! User lookup in the container's own `/etc/passwd` and `/etc/group`.
//!
//! Invariant: we parse the files ourselves instead of calling getpwnam(3): NSS would
//! load shared libraries and consult the host's configuration, and the supervisor
//! must see exactly the users of the container it runs in.

use std::path::Path;

/// Who a child runs as.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Ident {
    pub name: String,
    pub uid: u32,
    pub gid: u32,
    /// Supplementary groups (always includes `gid`).
    pub groups: Vec<u32>,
    pub home: String,
}

struct PasswdEntry {
    name: String,
    uid: u32,
    gid: u32,
    home: String,
}

/// The largest passwd or group file read.
const MAX_FILE: u64 = 4 << 20;

/// The file's text. The container owns its /etc: a FIFO there must not hang PID 1
/// (opened non-blocking, a regular file only), nor a huge file exhaust its memory
/// (at most `MAX_FILE`), nor bad bytes panic anything (replaced).
fn read(path: &Path) -> Result<String, String> {
    use std::io::Read;
    use std::os::unix::fs::OpenOptionsExt;
    let err = |e: std::io::Error| format!("cannot read {}: {e}", path.display());
    let f = match std::fs::OpenOptions::new().read(true).custom_flags(libc::O_NONBLOCK | libc::O_NOCTTY).open(path) {
        Ok(f) => f,
        // A container without a passwd file only knows numeric ids.
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(String::new()),
        Err(e) => return Err(err(e)),
    };
    if !f.metadata().map_err(err)?.is_file() {
        return Err(format!("cannot read {}: not a regular file", path.display()));
    }
    let mut bytes = Vec::new();
    f.take(MAX_FILE).read_to_end(&mut bytes).map_err(err)?;
    Ok(String::from_utf8_lossy(&bytes).into_owned())
}

fn passwd_entries(text: &str) -> impl Iterator<Item = PasswdEntry> + '_ {
    text.lines().filter(|l| !l.starts_with('#')).filter_map(|line| {
        let f: Vec<&str> = line.split(':').collect();
        if f.len() < 7 {
            return None;
        }
        Some(PasswdEntry {
            name: f[0].to_string(),
            uid: f[2].parse().ok()?,
            gid: f[3].parse().ok()?,
            home: f[5].to_string(),
        })
    })
}

/// (name, gid, members) of each line of a group file.
fn group_entries(text: &str) -> impl Iterator<Item = (&str, u32, Vec<&str>)> + '_ {
    text.lines().filter(|l| !l.starts_with('#')).filter_map(|line| {
        let f: Vec<&str> = line.split(':').collect();
        if f.len() < 4 {
            return None;
        }
        let members = f[3].split(',').filter(|m| !m.is_empty()).collect();
        Some((f[0], f[2].parse().ok()?, members))
    })
}

/// Resolves `user` or `user:group` (names or numbers) against `etc/passwd` and
/// `etc/group`. Without an explicit group, the supplementary groups are the primary
/// group plus every group listing the user (what initgroups(3) does).
pub fn resolve(spec: &str, etc: &Path) -> Result<Ident, String> {
    let (user, group) = match spec.split_once(':') {
        Some((u, g)) => (u, Some(g)),
        None => (spec, None),
    };
    if user.is_empty() || group.is_some_and(str::is_empty) {
        return Err(format!("invalid user {spec:?}"));
    }
    let passwd = read(&etc.join("passwd"))?;
    let entry = passwd_entries(&passwd).find(|e| e.name == user).or_else(|| {
        let uid: u32 = user.parse().ok()?;
        passwd_entries(&passwd).find(|e| e.uid == uid)
    });
    let mut ident = match entry {
        Some(e) => Ident { name: e.name, uid: e.uid, gid: e.gid, groups: Vec::new(), home: e.home },
        None => match user.parse::<u32>() {
            // An unnamed numeric uid gets the same gid, as docker does.
            Ok(uid) => Ident { name: user.to_string(), uid, gid: uid, groups: Vec::new(), home: "/".into() },
            Err(_) => return Err(format!("unknown user {user:?} (not in {}/passwd)", etc.display())),
        },
    };
    let groups_text = read(&etc.join("group"))?;
    match group {
        Some(g) => {
            let gid = match group_entries(&groups_text).find(|(n, _, _)| *n == g) {
                Some((_, gid, _)) => gid,
                None => g.parse().map_err(|_| format!("unknown group {g:?} (not in {}/group)", etc.display()))?,
            };
            ident.gid = gid;
            ident.groups = vec![gid];
        }
        None => {
            ident.groups.push(ident.gid);
            for (_, gid, members) in group_entries(&groups_text) {
                if members.contains(&ident.name.as_str()) && !ident.groups.contains(&gid) {
                    ident.groups.push(gid);
                }
            }
        }
    }
    Ok(ident)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn etc() -> tempfile::TempDir {
        let d = tempfile::tempdir().unwrap();
        std::fs::write(
            d.path().join("passwd"),
            "root:x:0:0:root:/root:/bin/sh\n# comment\nwww:x:33:33:www:/var/www:/bin/false\nbroken:line\n",
        )
        .unwrap();
        std::fs::write(d.path().join("group"), "root:x:0:\nwww:x:33:\nssl:x:101:www,other\nadm:x:4:root\n").unwrap();
        d
    }

    #[test]
    fn name_with_supplementary_groups() {
        let d = etc();
        let i = resolve("www", d.path()).unwrap();
        assert_eq!((i.uid, i.gid, i.groups.clone(), i.home.as_str()), (33, 33, vec![33, 101], "/var/www"));
        let r = resolve("root", d.path()).unwrap();
        assert_eq!(r.groups, vec![0, 4]);
    }

    #[test]
    fn explicit_group_and_numbers() {
        let d = etc();
        let i = resolve("www:ssl", d.path()).unwrap();
        assert_eq!((i.uid, i.gid, i.groups), (33, 101, vec![101]));
        let n = resolve("1234", d.path()).unwrap();
        assert_eq!((n.uid, n.gid, n.groups), (1234, 1234, vec![1234]));
        let n = resolve("33:7", d.path()).unwrap();
        assert_eq!((n.name.as_str(), n.uid, n.gid), ("www", 33, 7));
    }

    #[test]
    fn unknown_names_are_errors() {
        let d = etc();
        assert!(resolve("nobody", d.path()).unwrap_err().contains("unknown user"));
        assert!(resolve("www:nogroup", d.path()).unwrap_err().contains("unknown group"));
        assert!(resolve(":", d.path()).is_err());
    }
}
