//! Backend names in a pool: an entry's own, else `backend-N` after its position when free, so
//! names stay short and stable as entries come and go.

use crate::backend::default_name;

/// Gives every entry a name: `fixed[i]` when set (named in the file, or kept from the running
/// pool), else `backend-{i + 1}` when no other entry (nor `reserved`) has it, else the lowest
/// free `backend-K`. `Err((i, j))`: entries `i < j` carry the same fixed name.
pub fn fill_names(
    fixed: &[Option<String>],
    reserved: &[String],
) -> Result<Vec<String>, (usize, usize)> {
    for (j, name) in fixed.iter().enumerate() {
        let Some(name) = name else { continue };
        if let Some(i) = fixed[..j].iter().position(|n| n.as_ref() == Some(name)) {
            return Err((i, j));
        }
    }
    let mut taken: std::collections::HashSet<String> =
        fixed.iter().flatten().chain(reserved).cloned().collect();
    // First every unnamed entry whose positional default is free, then the rest, so as many
    // entries as possible are called after their position.
    let mut names: Vec<Option<String>> = fixed.to_vec();
    for (position, name) in names.iter_mut().enumerate() {
        if name.is_none() && taken.insert(default_name(position)) {
            *name = Some(default_name(position));
        }
    }
    let mut next_free = 0;
    Ok(names
        .into_iter()
        .map(|name| {
            name.unwrap_or_else(|| {
                while taken.contains(&default_name(next_free)) {
                    next_free += 1;
                }
                taken.insert(default_name(next_free));
                default_name(next_free)
            })
        })
        .collect())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn fixed(names: &[Option<&str>]) -> Vec<Option<String>> {
        names.iter().map(|n| n.map(str::to_owned)).collect()
    }

    /// Unnamed entries take `backend-{position}` unless it is taken, then the lowest free one.
    #[test]
    fn fills_default_names_around_taken_ones() {
        let names = fill_names(&fixed(&[None, Some("backend-1"), None, Some("big")]), &[])
            .expect("no clash");
        assert_eq!(names, ["backend-2", "backend-1", "backend-3", "big"]);
        let names = fill_names(&fixed(&[None, None]), &["backend-1".to_owned()]).expect("ok");
        assert_eq!(names, ["backend-3", "backend-2"]);
        assert_eq!(
            fill_names(&fixed(&[Some("a"), None, Some("a")]), &[]),
            Err((0, 2))
        );
    }
}
