//! The web-stack modules end to end, as root: real Debian containers built by the real
//! tool, real daemons (MariaDB, Caddy, nginx, PHP-FPM, WordPress, ownCloud's install
//! path), proven by real clients on the host (`mariadb`, `curl`).
//!
//! Few distinct package sets on purpose (each costs an apt run on a fresh machine):
//! - the stack (shipped caddy.toml + shipped mysql.toml's services + PHP): mysql, caddy, php;
//! - the apps (shipped wordpress.toml + owncloud from a tarball the test makes);
//! - nginx (shipped nginx.toml + a second site).

mod support;
use support::*;

use std::path::Path;

const SALT: u32 = 2;

/// A shipped spec's text, renamed and with "auto" addresses replaced (support's
/// `shipped_body`), or, with `from`, only the part from the first line that starts
/// with `from` (e.g. its `[services.` tables).
fn shipped(path: &str, from: Option<&str>, ipv4: &str, ipv6: &str) -> String {
    let body = shipped_body(&repo_file(path), ipv4, ipv6);
    match from {
        None => body,
        Some(from) => {
            let at = body.find(&format!("\n{from}")).unwrap_or_else(|| panic!("{path} has no `{from}`"));
            body[at..].to_string()
        }
    }
}

/// `mariadb -h ADDR -u USER -pSECRET -N -e SQL`: (success, stdout + stderr).
fn sql(addr: &str, user: &str, password: &str, query: &str) -> (bool, String) {
    let out = host(&["mariadb", "-h", addr, "-u", user, &format!("-p{password}"), "-N", "-B", "-e", query]);
    (out.status.success(), format!("{}{}", text(&out.stdout), text(&out.stderr)))
}

#[track_caller]
fn sql_ok(ct: &Ct, addr: &str, user: &str, password: &str, query: &str) -> String {
    let (ok, out) = sql(addr, user, password, query);
    assert!(ok, "mariadb -h {addr} -u {user}: {query}\n{out}\nlogs: {}", ct.logs());
    out
}

fn url(addr: &str, port: u16, path: &str) -> String {
    if addr.contains(':') {
        format!("http://[{addr}]:{port}{path}")
    } else {
        format!("http://{addr}:{port}{path}")
    }
}

/// GET until the answer is not a connection error (the server may still be binding).
fn get(ct: &Ct, args: &[&str]) -> (u16, String) {
    for _ in 0..50 {
        let answer = curl(args);
        if answer.0 != 0 {
            return answer;
        }
        std::thread::sleep(std::time::Duration::from_millis(200));
    }
    panic!("curl {args:?}: no answer\nlogs: {}", ct.logs());
}

const STACK_PHP: &str = r#"
[services.php]
extensions = ["mysql"]

[[services.caddy.sites]]
port = 8080
root = "/srv/php"
php = true

[[files]]
path = "/srv/php/index.php"
content = """<?php
header('Content-Type: text/plain');
echo "php ", PHP_MAJOR_VERSION, ".", PHP_MINOR_VERSION, " says ", 6 * 7, "\n";
echo "mysqli ", extension_loaded('mysqli') ? "yes" : "no", "\n";
"""
"#;

/// mysql + caddy + php in one container: points 1, 2 and 3 (caddy), on the shipped
/// specs' suite (trixie).
#[test]
fn stack_mysql_caddy_php() {
    require_e2e!();
    stack("trixie", "8.4", 10, "st");
}

/// The same stack on bookworm (PHP 8.2, MariaDB 10.11): the one web test that also
/// runs on the older suite, so both suites' renderings meet real daemons.
#[test]
fn stack_mysql_caddy_php_on_bookworm() {
    require_e2e!();
    stack("bookworm", "8.2", 40, "sb");
}

/// The stack test on `suite` (the shipped specs' base replaced), expecting PHP `php_version`;
/// host `n` of the slice, container name suffix `tag`.
fn stack(suite: &str, php_version: &str, n: u32, tag: &str) {
    let (a4, a6) = (v4(SALT, n), v6(SALT, n));
    let caddy = shipped("specs/caddy.toml", None, &a4, &a6);
    assert!(caddy.contains("\nbase = \"debian:trixie\"\n"), "the shipped caddy.toml changed its base: {caddy}");
    let caddy = caddy.replace("\nbase = \"debian:trixie\"\n", &format!("\nbase = \"debian:{suite}\"\n"));
    let mysql = shipped("specs/mysql.toml", Some("[services."), &a4, &a6);
    let body = format!("{caddy}\n{mysql}\n{STACK_PHP}");
    let ct = Ct::new(&format!("w{}{tag}", slice(SALT)), &body);
    ct.apply_ok();

    // --- mysql: the granted user sees its database over TCP, on IPv4 and IPv6.
    let shop = ct.secret("mysql-shop");
    let dbs = sql_ok(&ct, &a4, "shop", &shop, "SHOW DATABASES");
    assert!(dbs.lines().any(|l| l == "shop"), "{dbs}");
    assert!(!dbs.lines().any(|l| l == "reports"), "shop must not see reports: {dbs}");
    let dbs6 = sql_ok(&ct, &a6, "reports", &ct.secret("mysql-reports"), "SHOW DATABASES");
    assert!(dbs6.lines().any(|l| l == "reports") && dbs6.lines().any(|l| l == "shop"), "{dbs6}");
    let (bad, msg) = sql(&a4, "shop", "wrong-password", "SELECT 1");
    assert!(!bad && msg.contains("Access denied"), "{msg}");
    sql_ok(&ct, &a4, "shop", &shop, "CREATE TABLE shop.t (v VARCHAR(20)); INSERT INTO shop.t VALUES ('kept')");

    // --- caddy: the file, a proxied path, a rewrite, redirects, access log.
    let (code, page) = get(&ct, &[&url(&a4, 80, "/")]);
    assert_eq!(code, 200, "{page}\nlogs: {}", ct.logs());
    assert!(page.contains("<h1>Served by Caddy</h1>"), "{page}");
    let (code, page) = get(&ct, &[&url(&a6, 80, "/")]);
    assert!(code == 200 && page.contains("Served by Caddy"), "IPv6: {code} {page}");
    let (code, api) = curl(&["-i", &url(&a4, 80, "/api/status.json")]);
    assert_eq!(code, 200, "{api}\nlogs: {}", ct.logs());
    assert!(api.contains(r#"{"status": "ok"}"#), "{api}");
    assert!(api.contains("Server: SimpleHTTP"), "answered by the python backend: {api}");
    let (code, rewritten) = curl(&[&url(&a4, 80, "/status")]);
    assert!(code == 200 && rewritten.contains(r#""ok""#), "{code} {rewritten}");
    let (code, head) = curl(&["-i", &url(&a4, 80, "/index.htm")]);
    assert_eq!(code, 301, "{head}");
    assert!(head.lines().any(|l| l.to_ascii_lowercase().trim() == "location: /"), "{head}");
    let (code, head) = curl(&["-i", &url(&a4, 80, "/old-news")]);
    assert_eq!(code, 302, "{head}");
    assert!(head.contains("https://example.org/news"), "{head}");
    let (code, _) = curl(&[&url(&a4, 80, "/missing")]);
    assert_eq!(code, 404);
    eventually("caddy's access log", 10, || {
        let log = std::fs::read_to_string(ct.volume("var-log-caddy").join("_default-80.log")).ok()?;
        log.contains("/api/status.json").then_some(())
    });

    // --- php: a page executes through caddy (not served as source).
    let (code, php) = get(&ct, &[&url(&a4, 8080, "/")]);
    assert_eq!(code, 200, "{php}\nlogs: {}", ct.logs());
    assert!(php.contains(&format!("php {php_version} says 42")) && php.contains("mysqli yes"), "{php}");

    // --- a re-apply changes nothing.
    let pids = |ct: &Ct| ["mariadb", "caddy", "php-fpm", "backend"].map(|s| ct.service_pid(s));
    let before = pids(&ct);
    let again = ct.apply_ok();
    assert!(again.contains("No changes"), "{again}");
    assert_eq!(pids(&ct), before, "a no-op apply restarted something");

    // --- a site edit: new content served, caddy reloaded (same PID), MariaDB untouched.
    // The page's content and the site's config (a new redirect, so the Caddyfile changes).
    let edited = body.replace("<h1>Served by Caddy</h1>", "<h1>Edited site</h1>").replace(
        "{ from = \"/index.htm\", to = \"/\", status = 301 },",
        "{ from = \"/index.htm\", to = \"/\", status = 301 },\n  { from = \"/home\", to = \"/\", status = 308 },",
    );
    assert!(edited.contains("/home") && edited.contains("Edited site"), "the shipped caddy.toml changed");
    ct.write(&edited);
    let plan = run(&["plan", ct.spec().to_str().unwrap()]);
    let plan_text = text(&plan.stdout);
    assert_eq!(plan.status.code(), Some(2), "{plan_text}\n{}", text(&plan.stderr));
    assert!(plan_text.contains("reload caddy") && !plan_text.contains("restart"), "{plan_text}");
    let out = ct.apply_ok();
    // The file is rewritten in place; apply sends the reload without waiting for
    // `caddy reload` to finish, so the new redirect may take a moment.
    let (code, page) = curl(&[&url(&a4, 80, "/")]);
    assert!(code == 200 && page.contains("<h1>Edited site</h1>"), "{code} {page}\n{out}");
    eventually("the new redirect", 10, || (curl(&[&url(&a4, 80, "/home")]).0 == 308).then_some(()));
    let after = pids(&ct);
    assert_eq!(after[0], before[0], "MariaDB restarted by a site edit: {out}");
    assert_eq!(after[2], before[2], "PHP-FPM restarted by a site edit: {out}");
    assert_eq!(after[1], before[1], "the plan said reload, caddy was restarted: {out}");

    // --- destroy (keeping volumes) and apply: the rows are still there.
    ok(&["destroy", &ct.name]);
    assert!(!sql(&a4, "shop", &shop, "SELECT 1").0, "the container is gone");
    ct.apply_ok();
    let rows = eventually("mariadb after re-create", 30, || {
        let (ok, out) = sql(&a4, "shop", &shop, "SELECT v FROM shop.t");
        ok.then_some(out)
    });
    assert_eq!(rows.trim(), "kept", "logs: {}", ct.logs());
    assert_eq!(ct.secret("mysql-shop"), shop, "the secret survives a destroy without --volumes");
}

/// The test stand-in for ownCloud's release tarball: what the module's install path
/// uses (`occ maintenance:install`, config/*.config.php merged over config.php,
/// status.php), reading the database through the module's rendered config.
const OC_FILES: &[(&str, &str)] = &[
    ("owncloud/config/config.sample.php", "<?php $CONFIG = [];\n"),
    ("owncloud/index.php", "<?php echo \"ownCloud test index\\n\";\n"),
    (
        "owncloud/lib-config.php",
        r#"<?php
// Test stand-in: merge config.php and config/*.config.php like ownCloud does.
function oc_config() {
    $CONFIG = [];
    $all = [];
    if (is_file(__DIR__ . '/config/config.php')) { include __DIR__ . '/config/config.php'; $all = $CONFIG; }
    foreach (glob(__DIR__ . '/config/*.config.php') as $f) { $CONFIG = []; include $f; $all = array_merge($all, $CONFIG); }
    return $all;
}
function oc_db($c) {
    [$host, $sock] = array_pad(explode(':', $c['dbhost'], 2), 2, null);
    return new mysqli($host, $c['dbuser'], $c['dbpassword'], $c['dbname'], 0, $sock);
}
"#,
    ),
    (
        "owncloud/status.php",
        r#"<?php
require __DIR__ . '/lib-config.php';
header('Content-Type: application/json');
$c = oc_config();
$db = oc_db($c);
$n = $db->query('SELECT COUNT(*) FROM oc_users')->fetch_row()[0];
echo json_encode(['installed' => ($c['installed'] ?? false) ? 'true' : 'false', 'maintenance' => 'false',
  'version' => '10.15.0.0', 'versionstring' => '10.15.0', 'edition' => 'Community', 'productname' => 'ownCloud',
  'users' => (int)$n, 'datadir_ok' => is_file($c['datadirectory'] . '/.ocdata'),
  'trusted' => $c['trusted_domains'] ?? []]), "\n";
"#,
    ),
    (
        "owncloud/occ",
        r#"<?php
// Test stand-in for occ maintenance:install.
require __DIR__ . '/lib-config.php';
$o = [];
foreach (array_slice($argv, 2) as $a) if (preg_match('/^--([^=]+)=(.*)$/s', $a, $m)) $o[$m[1]] = $m[2];
if (($argv[1] ?? '') !== 'maintenance:install') { fwrite(STDERR, "unknown command\n"); exit(1); }
$c = ['dbhost' => $o['database-host'], 'dbuser' => $o['database-user'], 'dbpassword' => $o['database-pass'], 'dbname' => $o['database-name']];
$db = oc_db($c);
$db->query('CREATE TABLE IF NOT EXISTS oc_users (uid VARCHAR(64) PRIMARY KEY, password VARCHAR(255))');
$db->query("REPLACE INTO oc_users VALUES ('" . $db->real_escape_string($o['admin-user']) . "', '" . password_hash($o['admin-pass'], PASSWORD_DEFAULT) . "')");
file_put_contents(__DIR__ . '/config/config.php', "<?php\n\$CONFIG = " . var_export(['instanceid' => 'test', 'installed' => true], true) . ";\n") or exit(2);
file_put_contents($o['data-dir'] . '/.ocdata', '') !== false or exit(3);
echo "ownCloud was successfully installed\n";
"#,
    ),
];

/// Make `name` (a .tar.gz) in `dir` from OC_FILES with the host's tar; its sha256.
/// Reproducible (fixed times, owners and order, no name or time in the gzip header), so
/// the same content hashes the same and the built layer is reused by the next run.
fn owncloud_tarball(dir: &Path, name: &str) -> String {
    let src = dir.join("oc-src");
    for (path, content) in OC_FILES {
        let p = src.join(path);
        std::fs::create_dir_all(p.parent().unwrap()).unwrap();
        std::fs::write(p, content).unwrap();
    }
    let tar = dir.join(name.trim_end_matches(".gz"));
    let (tar_s, src_s) = (tar.to_str().unwrap(), src.to_str().unwrap());
    let out = host(&[
        "tar",
        "--sort=name",
        "--mtime=@0",
        "--owner=0",
        "--group=0",
        "--numeric-owner",
        "--mode=go-w",
        "-cf",
        tar_s,
        "-C",
        src_s,
        "owncloud",
    ]);
    assert!(out.status.success(), "tar: {}", text(&out.stderr));
    let out = host(&["gzip", "-n", "-f", tar_s]);
    assert!(out.status.success(), "gzip: {}", text(&out.stderr));
    let tarball = dir.join(name);
    assert!(tarball.exists());
    let out = host(&["sha256sum", tarball.to_str().unwrap()]);
    assert!(out.status.success());
    String::from_utf8_lossy(&out.stdout).split_whitespace().next().unwrap().to_string()
}

/// WordPress (shipped wordpress.toml) and ownCloud (from a tarball next to the spec)
/// in one container, both on Caddy with PHP and MariaDB: points 4 and 5.
#[test]
fn wordpress_and_owncloud_on_caddy() {
    require_e2e!();
    let (a4, a6) = (v4(SALT, 20), v6(SALT, 20));
    let name = format!("w{}ap", slice(SALT));
    let ct = Ct::new(&name, "");
    let sha = owncloud_tarball(ct.dir.path(), "owncloud-test.tar.gz");
    let wordpress = shipped("specs/wordpress.toml", None, &a4, &a6);
    let owncloud = format!(
        "\n[services.owncloud]\nurl = \"owncloud-test.tar.gz\"\nsha256 = \"{sha}\"\n\
         hosts = [\"cloud.example.org\"]\nport = 8080\nweb = \"caddy\"\nadmin_user = \"admin\"\n"
    );
    ct.write(&format!("{wordpress}\n{owncloud}"));
    ct.apply_ok();

    // --- wordpress: the static readme, and the install page with a working database.
    let (code, readme) = get(&ct, &[&url(&a4, 80, "/readme.html")]);
    assert_eq!(code, 200, "{readme}\nlogs: {}", ct.logs());
    assert!(readme.contains("WordPress"), "{readme}");
    let (code, install) = curl(&["-L", &url(&a4, 80, "/wp-admin/install.php")]);
    assert!(
        !install.contains("Error establishing a database connection"),
        "no database: {install}\nlogs: {}",
        ct.logs()
    );
    assert_eq!(code, 200, "{install}\nlogs: {}", ct.logs());
    assert!(install.contains("<h1>Welcome</h1>"), "{install}");
    let (code, _) = curl(&[&url(&a6, 80, "/readme.html")]);
    assert_eq!(code, 200, "IPv6");

    // --- owncloud: status.php as JSON through Caddy, after the module's install ran.
    let (code, status) = get(&ct, &["-H", "Host: cloud.example.org", &url(&a4, 8080, "/status.php")]);
    assert_eq!(code, 200, "{status}\nlogs: {}", ct.logs());
    let json: serde_json::Value =
        serde_json::from_str(&status).unwrap_or_else(|e| panic!("{e}: {status}\nlogs: {}", ct.logs()));
    assert_eq!(json["installed"], "true", "{json}");
    assert_eq!(json["productname"], "ownCloud", "{json}");
    assert_eq!(json["users"], 1, "the admin account: {json}");
    assert_eq!(json["datadir_ok"], true, "{json}");
    assert!(json["trusted"].as_array().unwrap().iter().any(|d| d == "cloud.example.org"), "{json}");
    // The site answers only its host.
    let (_, other) = curl(&["-H", "Host: other.example.org", &url(&a4, 8080, "/status.php")]);
    assert!(!other.contains("ownCloud"), "ownCloud's site must answer only cloud.example.org: {other}");

    // --- a re-apply is a no-op (the install does not run again).
    let again = ct.apply_ok();
    assert!(again.contains("No changes"), "{again}");

    // --- a host name added to the running container (issue 12, point 9): only the
    // rendered config and the Caddyfile change (caddy reloads); PID 1 and MariaDB keep
    // their pids, and the site answers its new name.
    let (pid1, db) = (ct.pid1(), ct.service_pid("mariadb"));
    let site = "name = \"default\"\n";
    assert!(wordpress.contains(site), "{wordpress}");
    let hosted = wordpress.replacen(site, &format!("{site}hosts = [\"blog.example.org\"]\n"), 1);
    ct.write(&format!("{hosted}\n{owncloud}"));
    let added = ct.apply_ok();
    assert!(!added.contains("recreate"), "a host name must not recreate the container:\n{added}");
    assert_eq!(ct.pid1(), pid1, "PID 1 was replaced:\n{added}");
    assert_eq!(ct.service_pid("mariadb"), db, "MariaDB was restarted:\n{added}");
    let (code, readme) = get(&ct, &["-H", "Host: blog.example.org", &url(&a4, 80, "/readme.html")]);
    assert_eq!(code, 200, "{readme}\n{added}\nlogs: {}", ct.logs());
    assert!(readme.contains("WordPress"), "{readme}");
    let (code, install) = curl(&["-L", "-H", "Host: blog.example.org", &url(&a4, 80, "/wp-admin/install.php")]);
    assert_eq!(code, 200, "{install}\nlogs: {}", ct.logs());
    assert!(install.contains("<h1>Welcome</h1>"), "the site's config (database) is found: {install}");
    // The site has a name now: other hosts are not its.
    let (_, other) = curl(&["-H", "Host: other.example.org", &url(&a4, 80, "/readme.html")]);
    assert!(!other.contains("WordPress"), "only blog.example.org is the blog now: {other}");
}

const NGINX_STATIC: &str = r#"
[[services.nginx.sites]]
hosts = ["static.example.org"]
port = 80
root = "/srv/static"

[[files]]
path = "/srv/static/index.html"
content = """<h1>Static on nginx</h1>
"""
"#;

/// nginx (shipped nginx.toml plus a second, host-named site): sites, a reverse proxy,
/// a redirect and FastCGI to PHP-FPM — points 3 (nginx) and 6.
#[test]
fn nginx_sites_proxy_and_php() {
    require_e2e!();
    let (a4, a6) = (v4(SALT, 30), v6(SALT, 30));
    let body = format!("{}\n{NGINX_STATIC}", shipped("specs/nginx.toml", None, &a4, &a6));
    let ct = Ct::new(&format!("w{}ng", slice(SALT)), &body);
    ct.apply_ok();

    // PHP through FastCGI, with the spec's php.ini settings.
    let (code, php) = get(&ct, &[&url(&a4, 80, "/")]);
    assert_eq!(code, 200, "{php}\nlogs: {}", ct.logs());
    assert!(php.contains("Hello from PHP 8.4"), "{php}");
    assert!(php.contains("memory_limit = 256M") && php.contains("time zone = UTC"), "{php}");
    let (code, php6) = get(&ct, &[&url(&a6, 80, "/index.php")]);
    assert!(code == 200 && php6.contains("behind nginx"), "IPv6: {code} {php6}");
    // The second site, chosen by Host.
    let (code, page) = curl(&["-H", "Host: static.example.org", &url(&a4, 80, "/")]);
    assert!(code == 200 && page.contains("<h1>Static on nginx</h1>"), "{code} {page}\nlogs: {}", ct.logs());
    // The reverse proxy to the python backend.
    let (code, api) = curl(&["-i", &url(&a4, 80, "/api/status.json")]);
    assert_eq!(code, 200, "{api}\nlogs: {}", ct.logs());
    // nginx hides the upstream's Server header; the file exists only in the backend's folder.
    assert!(api.contains(r#"{"status": "ok"}"#), "{api}");
    // The redirect.
    let (code, head) = curl(&["-i", &url(&a4, 80, "/home")]);
    assert_eq!(code, 301, "{head}");
    assert!(head.to_ascii_lowercase().contains("location: http://") || head.contains("Location: /"), "{head}");
    // The access log of the default site.
    eventually("nginx's access log", 10, || {
        let log = std::fs::read_to_string(ct.volume("var-log-nginx").join("_default-80.log")).ok()?;
        log.contains("/api/status.json").then_some(())
    });

    // Edit the second site's config: nginx reloads (same PID), PHP-FPM untouched.
    let before = (ct.service_pid("nginx"), ct.service_pid("php-fpm"));
    let edited =
        body.replace("hosts = [\"static.example.org\"]", "hosts = [\"static.example.org\", \"www.example.org\"]");
    ct.write(&edited);
    let plan = text(&run(&["plan", ct.spec().to_str().unwrap()]).stdout);
    let out = ct.apply_ok();
    assert!(plan.contains("reload nginx") && !plan.contains("restart"), "{plan}");
    // A HUP reload is asynchronous: the new workers take a moment to start.
    eventually("the new server name", 10, || {
        let (code, page) = curl(&["-H", "Host: www.example.org", &url(&a4, 80, "/")]);
        (code == 200 && page.contains("Static on nginx")).then_some(())
    });
    assert_eq!(ct.service_pid("php-fpm"), before.1, "{out}");
    assert_eq!(ct.service_pid("nginx"), before.0, "the plan said reload: {out}");
}
