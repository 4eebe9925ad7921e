//! Writing an edited copy of a checkpoint (a LoRA merge): every tensor read as f32, passed through an edit, written to
//! one `model.safetensors`; `config.json` and the tokenizer files copied; the whole directory committed atomically.

use std::cell::RefCell;
use std::path::Path;

use crate::atomic::Staging;
use crate::st_write::{Pending, write_f32_safetensors};
use crate::{Checkpoint, Error, Result, TensorReader};

/// Files copied beside the weights when the source has them.
const COPIED: [&str; 5] =
    ["config.json", "tokenizer.json", "tokenizer_config.json", "special_tokens_map.json", "generation_config.json"];

/// An edit of one tensor: its name, shape and values (changed in place).
pub type TensorEdit<'a> = dyn FnMut(&str, &[usize], &mut Vec<f32>) -> Result<()> + 'a;

/// Writes `ckpt` with `edit` applied to every tensor (in name order, one tensor in memory at a time) into `out_dir`,
/// then lets `finish` add files to the directory before it is committed. A non-empty `out_dir` is refused.
pub fn write_edited_checkpoint(
    ckpt: &Checkpoint,
    out_dir: &Path,
    edit: &mut TensorEdit<'_>,
    finish: &mut dyn FnMut(&Path) -> Result<()>,
) -> Result<()> {
    let staging = Staging::new(out_dir, false)?;
    let dir = staging.path().to_owned();
    for name in COPIED {
        let src = ckpt.dir.join(name);
        if src.is_file() {
            std::fs::copy(&src, dir.join(name)).map_err(|e| Error::io(&src, e))?;
        }
    }
    let reader = TensorReader::open(ckpt)?;
    let mut names: Vec<&String> = ckpt.location.keys().collect();
    names.sort();
    let edit = RefCell::new(edit);
    let reader = &reader;
    let edit = &edit;
    let pending: Vec<Pending<'_>> = names
        .into_iter()
        .map(|name| {
            let shape = reader.shape(name)?;
            Ok(Pending {
                name: name.clone(),
                shape,
                fill: Box::new(move || {
                    let (shape, mut values) = reader.read_f32(name)?;
                    (edit.borrow_mut())(name, &shape, &mut values)?;
                    Ok(values)
                }),
            })
        })
        .collect::<Result<_>>()?;
    write_f32_safetensors(&dir.join("model.safetensors"), pending)?;
    finish(&dir)?;
    staging.commit()
}
