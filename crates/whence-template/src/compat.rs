//! jinja2 built-ins that minijinja keeps in minijinja-contrib, adapted where the
//! contrib signature differs from jinja2's.

use minijinja::value::{from_args, Kwargs, Rest, Value, ValueOrKwargs};
use minijinja::{Environment, Error, ErrorKind, State};

pub(crate) fn add_to_environment(env: &mut Environment<'static>) {
    env.add_filter("striptags", minijinja_contrib::filters::striptags);
    env.add_filter("filesizeformat", minijinja_contrib::filters::filesizeformat);
    env.add_filter("truncate", truncate);
    env.add_function("joiner", minijinja_contrib::globals::joiner);
    env.add_function("cycler", cycler);
}

/// jinja2's `truncate(s, length=255, killwords=False, end='...', leeway=None)`,
/// positionally or by keyword (contrib's takes keywords only).
fn truncate(state: &mut State, args: Rest<ValueOrKwargs>) -> Result<Value, Error> {
    const NAMES: [&str; 4] = ["length", "killwords", "end", "leeway"];
    let args = args.into_values();
    let (positional, kwargs): (&[Value], Kwargs) = from_args(&args)?;
    let Some((value, rest)) = positional.split_first() else {
        return Err(Error::new(ErrorKind::MissingArgument, "truncate needs a value"));
    };
    if rest.len() > NAMES.len() {
        return Err(Error::from(ErrorKind::TooManyArguments));
    }
    let mut merged: Vec<(&str, Value)> = Vec::new();
    for (name, arg) in NAMES.iter().zip(rest) {
        if kwargs.has(name) {
            return Err(Error::new(ErrorKind::TooManyArguments, format!("truncate got multiple values for argument '{name}'")));
        }
        merged.push((name, arg.clone()));
    }
    for name in kwargs.args() {
        merged.push((name, kwargs.get::<Value>(name)?));
    }
    let kwargs: Kwargs = merged.into_iter().collect();
    minijinja_contrib::filters::truncate(state, value, kwargs)
}

/// jinja2's `cycler(*items)` (contrib's takes one list).
fn cycler(items: Rest<Value>) -> Result<Value, Error> {
    minijinja_contrib::globals::cycler(items.0)
}
