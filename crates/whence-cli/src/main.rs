//! The `whence` binary: the command line of [`whence_cli`].

fn main() -> std::process::ExitCode {
    whence_cli::main(std::env::args_os())
}
