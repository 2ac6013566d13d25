//! Every command's `--help` shows at most one default per option.

use crate::*;

/// The subcommands `whence --help` lists (without `help`).
fn commands() -> Vec<String> {
    let help = stdout(&whence(["--help"]));
    help.lines()
        .skip_while(|line| !line.starts_with("Commands:"))
        .skip(1)
        .take_while(|line| !line.trim().is_empty())
        // A command's own line; its wrapped description is indented deeper.
        .filter(|line| line.starts_with("  ") && !line.starts_with("   "))
        .filter_map(|line| line.split_whitespace().next().map(str::to_string))
        .filter(|name| name != "help")
        .collect()
}

/// The help text cut into items: an option or argument line and the
/// description lines under it (clap indents items by 2 or 6 spaces, and
/// their wrapped descriptions deeper).
fn items(help: &str) -> Vec<String> {
    let mut items: Vec<String> = Vec::new();
    for line in help.lines() {
        let indent = line.len() - line.trim_start().len();
        let trimmed = line.trim_start();
        let starts_item = (2..=6).contains(&indent) && (trimmed.starts_with('-') || trimmed.starts_with('<') || trimmed.starts_with('['));
        if starts_item || indent == 0 {
            items.push(String::new());
        }
        if let Some(item) = items.last_mut() {
            item.push_str(line);
            item.push('\n');
        }
    }
    items
}

#[test]
fn every_option_shows_at_most_one_default() {
    let commands = commands();
    assert!(commands.len() >= 10, "{commands:?}");
    let mut with_default = 0;
    let mut helps = vec![("whence".to_string(), stdout(&whence(["--help"])))];
    helps.extend(commands.iter().map(|c| (format!("whence {c}"), stdout(&whence([c.as_str(), "--help"])))));
    for (command, help) in &helps {
        assert!(help.contains("-h, --help"), "{command} --help:\n{help}");
        for item in items(help) {
            let defaults = item.matches("[default:").count();
            assert!(defaults <= 1, "`{command} --help` shows {defaults} defaults for one option:\n{item}");
            with_default += defaults;
        }
    }
    // The check sees the defaults there are.
    assert!(with_default >= 40, "only {with_default} defaults found");
}

#[test]
fn the_item_splitter_catches_two_defaults() {
    let help = "Options:\n      --id-field <ID_FIELD>\n          Field holding the id [default: FILE:LINE]\n          [default: id]\n      --x <X>  Other [default: 1]\n";
    let items = items(help);
    assert_eq!(items.iter().map(|i| i.matches("[default:").count()).collect::<Vec<_>>(), vec![0, 2, 1]);
}
