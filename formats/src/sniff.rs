//! Picking a spec's format (`detect`): by its file's extension, else by its content. Which JSON
//! dialect a document is comes from one streaming pass that keeps nothing but the keys that
//! tell the dialects apart (no `serde_json::Value` is built, so detecting a large canonical
//! spec costs little more than skipping over it).

use std::fmt;
use std::marker::PhantomData;

use serde::Deserialize;
use serde::de::{self, Deserializer, IgnoredAny, MapAccess, SeqAccess, Visitor};

use std::path::Path;

use crate::format::Format;
use crate::nesting::check_json_nesting;
use crate::{checklist, markdown};

/// Picks the format of a file: by extension (`.toml`, `.md`), else by content.
pub fn detect(path_or_label: &str, text: &str) -> Format {
    let text = text.strip_prefix('\u{feff}').unwrap_or(text);
    let ext = Path::new(path_or_label)
        .extension()
        .map(|e| e.to_string_lossy().to_ascii_lowercase())
        .unwrap_or_default();
    match ext.as_str() {
        "toml" => return Format::Toml,
        "md" | "markdown" => return Format::Markdown,
        "json" => return sniff_json(text),
        _ => {}
    }
    let start = text.trim_start();
    if start.starts_with('{') {
        return sniff_json(text);
    }
    // `[` also opens TOML (`[[tasks]]`, `[settings]`): a task list only if it reads as JSON.
    if start.starts_with('[') && sniff_json(text) == Format::TaskList {
        return Format::TaskList;
    }
    // Unknown extension and not JSON: Markdown if it has task headings or top-level checklist
    // items, and no TOML tables.
    let mut task_heading = false;
    for line in text.lines() {
        let l = line.trim_start();
        if l.starts_with("[[tasks]]") || l.starts_with("[settings]") {
            return Format::Toml;
        }
        if !task_heading && l.starts_with("##") {
            task_heading = markdown::task_heading(l).is_some();
        }
        if !task_heading && checklist::top_level_item(line) {
            task_heading = true;
        }
    }
    if task_heading {
        Format::Markdown
    } else {
        Format::Toml
    }
}

/// Which JSON dialect a document is, from its top-level shape.
fn sniff_json(text: &str) -> Format {
    if check_json_nesting(text).is_some() {
        return Format::Json;
    }
    json_format(text)
}

/// Detects the dialect of JSON text; anything unreadable is `Json` (whose parser then reports
/// the error with its position).
fn json_format(text: &str) -> Format {
    let mut de = serde_json::Deserializer::from_str(text);
    let Ok(Read(top)) = Read::<Top>::deserialize(&mut de) else {
        return Format::Json;
    };
    if de.end().is_err() {
        return Format::Json;
    }
    if top.array {
        // No canonical spec is an array: a claude-code-mcp task list.
        return Format::TaskList;
    }
    if !top.object {
        return Format::Json;
    }
    if let Some(subs) = &top.subtasks {
        return if top.metadata_or_objective {
            Format::MarkdownJson
        } else if subs.any_command {
            Format::Subtasks
        } else if subs.any_title_or_steps {
            Format::MarkdownJson
        } else {
            Format::Subtasks
        };
    }
    if top.has_tasks_key {
        return match &top.tasks {
            Some(t) if t.len > 0 && !t.any_name && t.any_id_or_title => Format::TaskMaster,
            // What TaskMaster writes after `init`: no tasks yet, and its metadata.
            Some(t) if t.len == 0 && top.taskmaster_meta => Format::TaskMaster,
            _ => Format::Json,
        };
    }
    if top.len > 0 && top.all_values_objects && top.any_holder {
        return Format::TaskMaster;
    }
    Format::Json
}

/// The top-level object's telling features.
#[derive(Default)]
struct Top {
    object: bool,
    /// The document is an array.
    array: bool,
    len: usize,
    subtasks: Option<List>,
    tasks: Option<List>,
    has_tasks_key: bool,
    metadata_or_objective: bool,
    /// A `metadata` or `meta` key (TaskMaster's, beside `tasks`).
    taskmaster_meta: bool,
    all_values_objects: bool,
    /// Some value is an object holding a `tasks` array (a TaskMaster tag).
    any_holder: bool,
}

/// An array of task-like objects: which keys its elements have.
#[derive(Default)]
struct List {
    len: usize,
    any_command: bool,
    any_title_or_steps: bool,
    any_name: bool,
    any_id_or_title: bool,
}

/// Keys of one element.
#[derive(Default)]
struct Item {
    command: bool,
    title: bool,
    steps: bool,
    name: bool,
    id: bool,
}

/// Whether a value is an object, and whether it holds a `tasks` array.
#[derive(Default)]
struct Holder {
    object: bool,
    tasks_array: bool,
}

/// Whether a value is an array.
#[derive(Default)]
struct IsArray(bool);

/// What a value tells the sniffer: read from an array or an object, and the default for any
/// other value. Arrays and objects it does not look into are skipped and tell the default.
trait Telling: Default {
    /// What an array tells.
    fn from_seq<'de, A: SeqAccess<'de>>(seq: A) -> Result<Self, A::Error> {
        skip_seq(seq)?;
        Ok(Self::default())
    }

    /// What an object tells.
    fn from_map<'de, A: MapAccess<'de>>(map: A) -> Result<Self, A::Error> {
        skip_map(map)?;
        Ok(Self::default())
    }
}

/// Reads past an array.
fn skip_seq<'de, A: SeqAccess<'de>>(mut seq: A) -> Result<(), A::Error> {
    while seq.next_element::<IgnoredAny>()?.is_some() {}
    Ok(())
}

/// Reads past an object.
fn skip_map<'de, A: MapAccess<'de>>(mut map: A) -> Result<(), A::Error> {
    while map.next_entry::<IgnoredAny, IgnoredAny>()?.is_some() {}
    Ok(())
}

/// Any JSON value read as a `T`: the one visitor of the sniffer, whatever it looks for.
struct Read<T>(T);

impl<'de, T: Telling> Deserialize<'de> for Read<T> {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        struct V<T>(PhantomData<T>);
        impl<'de, T: Telling> Visitor<'de> for V<T> {
            type Value = Read<T>;
            fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                f.write_str("any JSON value")
            }
            fn visit_bool<E: de::Error>(self, _: bool) -> Result<Self::Value, E> {
                Ok(Read(T::default()))
            }
            fn visit_i64<E: de::Error>(self, _: i64) -> Result<Self::Value, E> {
                Ok(Read(T::default()))
            }
            fn visit_u64<E: de::Error>(self, _: u64) -> Result<Self::Value, E> {
                Ok(Read(T::default()))
            }
            fn visit_f64<E: de::Error>(self, _: f64) -> Result<Self::Value, E> {
                Ok(Read(T::default()))
            }
            fn visit_str<E: de::Error>(self, _: &str) -> Result<Self::Value, E> {
                Ok(Read(T::default()))
            }
            fn visit_unit<E: de::Error>(self) -> Result<Self::Value, E> {
                Ok(Read(T::default()))
            }
            fn visit_none<E: de::Error>(self) -> Result<Self::Value, E> {
                Ok(Read(T::default()))
            }
            fn visit_seq<A: SeqAccess<'de>>(self, seq: A) -> Result<Self::Value, A::Error> {
                T::from_seq(seq).map(Read)
            }
            fn visit_map<A: MapAccess<'de>>(self, map: A) -> Result<Self::Value, A::Error> {
                T::from_map(map).map(Read)
            }
        }
        d.deserialize_any(V(PhantomData))
    }
}

/// A map key, borrowed when the text has no escapes.
struct Key<'de>(std::borrow::Cow<'de, str>);

impl<'de> Deserialize<'de> for Key<'de> {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        struct V;
        impl<'de> Visitor<'de> for V {
            type Value = Key<'de>;
            fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                f.write_str("a key")
            }
            fn visit_borrowed_str<E: de::Error>(self, s: &'de str) -> Result<Key<'de>, E> {
                Ok(Key(s.into()))
            }
            fn visit_str<E: de::Error>(self, s: &str) -> Result<Key<'de>, E> {
                Ok(Key(s.to_string().into()))
            }
        }
        d.deserialize_str(V)
    }
}

impl Telling for Top {
    fn from_seq<'de, A: SeqAccess<'de>>(seq: A) -> Result<Top, A::Error> {
        skip_seq(seq)?;
        Ok(Top {
            array: true,
            ..Top::default()
        })
    }

    fn from_map<'de, A: MapAccess<'de>>(mut map: A) -> Result<Top, A::Error> {
        let mut top = Top {
            object: true,
            all_values_objects: true,
            ..Top::default()
        };
        while let Some(Key(k)) = map.next_key::<Key<'de>>()? {
            top.len += 1;
            match &*k {
                "subtasks" => {
                    top.all_values_objects = false;
                    top.subtasks = map.next_value::<Read<Option<List>>>()?.0;
                }
                "tasks" => {
                    top.all_values_objects = false;
                    top.has_tasks_key = true;
                    top.tasks = map.next_value::<Read<Option<List>>>()?.0;
                }
                other => {
                    if other == "metadata" || other == "objective" {
                        top.metadata_or_objective = true;
                    }
                    top.taskmaster_meta |= other == "metadata" || other == "meta";
                    let h = map.next_value::<Read<Holder>>()?.0;
                    top.all_values_objects &= h.object;
                    top.any_holder |= h.tasks_array;
                }
            }
        }
        Ok(top)
    }
}

/// `Some(list)` for an array, `None` for anything else.
impl Telling for Option<List> {
    fn from_seq<'de, A: SeqAccess<'de>>(mut seq: A) -> Result<Option<List>, A::Error> {
        let mut list = List::default();
        while let Some(Read(item)) = seq.next_element::<Read<Item>>()? {
            list.len += 1;
            list.any_command |= item.command;
            list.any_title_or_steps |= item.title || item.steps;
            list.any_name |= item.name;
            list.any_id_or_title |= item.id || item.title;
        }
        Ok(Some(list))
    }
}

impl Telling for Item {
    fn from_map<'de, A: MapAccess<'de>>(mut map: A) -> Result<Item, A::Error> {
        let mut item = Item::default();
        while let Some(Key(k)) = map.next_key::<Key<'de>>()? {
            match &*k {
                "command" => item.command = true,
                "title" => item.title = true,
                "steps" => item.steps = true,
                "name" => item.name = true,
                "id" => item.id = true,
                _ => {}
            }
            map.next_value::<IgnoredAny>()?;
        }
        Ok(item)
    }
}

impl Telling for Holder {
    fn from_map<'de, A: MapAccess<'de>>(mut map: A) -> Result<Holder, A::Error> {
        let mut h = Holder {
            object: true,
            tasks_array: false,
        };
        while let Some(Key(k)) = map.next_key::<Key<'de>>()? {
            if k == "tasks" {
                h.tasks_array |= map.next_value::<Read<IsArray>>()?.0.0;
            } else {
                map.next_value::<IgnoredAny>()?;
            }
        }
        Ok(h)
    }
}

impl Telling for IsArray {
    fn from_seq<'de, A: SeqAccess<'de>>(seq: A) -> Result<IsArray, A::Error> {
        skip_seq(seq)?;
        Ok(IsArray(true))
    }
}
