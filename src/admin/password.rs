//! `aigate admin-password`: read a password from stdin, print its bcrypt
//! hash for `admin.users[].password_hash`.

use std::io::BufRead;

/// bcrypt cost: ~50-100 ms a check, and logins are rate-limited besides.
pub const COST: u32 = 10;

pub fn run() -> i32 {
    let mut line = String::new();
    if let Err(e) = std::io::stdin().lock().read_line(&mut line) {
        eprintln!("aigate: cannot read the password from stdin: {e}");
        return 1;
    }
    let password = line.trim_end_matches(['\n', '\r']);
    if password.is_empty() {
        eprintln!(
            "aigate: empty password (give it on stdin: `echo -n ... | aigate admin-password`)"
        );
        return 1;
    }
    match bcrypt::hash(password, COST) {
        Ok(h) => {
            println!("{h}");
            0
        }
        Err(e) => {
            eprintln!("aigate: cannot hash: {e}");
            1
        }
    }
}
