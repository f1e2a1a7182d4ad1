use clap::Parser;
use std::io::Write;

#[global_allocator]
static ALLOC: mimalloc::MiMalloc = mimalloc::MiMalloc;

fn main() {
    // Before anything else: this may replace the process (see memory.rs).
    aigate::memory::tune_allocator();
    env_logger::Builder::from_env(env_logger::Env::default().default_filter_or("info"))
        .format(|buf, record| {
            // `log_format: json` access lines are whole JSON objects: print them bare.
            let msg = record.args().to_string();
            if aigate::log_noise::is_noise(record.target(), &msg) {
                return Ok(());
            }
            if record.target() == "access" && msg.starts_with('{') {
                return writeln!(buf, "{msg}");
            }
            let ts = buf.timestamp();
            writeln!(buf, "[{ts} {} {}] {msg}", record.level(), record.target())
        })
        .init();
    let cli = aigate::cli::Cli::parse();
    std::process::exit(aigate::server::main(cli));
}
