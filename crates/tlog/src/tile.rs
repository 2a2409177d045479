//! C2SP tlog-tiles: tile coordinates, paths, entry bundles, and proofs from tiles.
//!
//! A tile at level `L` and index `N` holds the hashes at tree level `8L` with
//! indexes `N*256 .. N*256 + W` (C2SP tlog-tiles §Merkle Tree). Hashes at tree
//! levels between tile levels are recomputed from the tile below, so tiles
//! carry every stored hash of the layout in [`crate::stored_hash_index`].

use std::collections::BTreeMap;

use crate::{node_hash, split_stored_hash_index, stored_hash_index, Error, Hash, HashReader};
use crate::{proof::read_exact, ReadError, HASH_SIZE};

/// Tree levels per tile level (C2SP tlog-tiles fixes tile height 8).
pub const TILE_HEIGHT: u8 = 8;
/// Hashes (or entries) in a full tile: 2^[`TILE_HEIGHT`].
pub const TILE_WIDTH: u16 = 256;
/// Largest entry an entry bundle can carry (a big-endian u16 length prefix).
pub const MAX_ENTRY_SIZE: usize = u16::MAX as usize;

/// One tile or entry bundle, as named by a tlog-tiles path.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct Tile {
    /// Tile level `L` (0..=63). Entry bundles have level 0.
    pub level: u8,
    /// Tile index `N` within its level.
    pub index: u64,
    /// Number of hashes or entries, 1..=256; below 256 the tile is partial.
    pub width: u16,
    /// An entry bundle (`tile/entries/...`) rather than a hash tile.
    pub entries: bool,
}

impl Tile {
    /// The hash tile at `level` and `index` as it is in a tree of `size`
    /// leaves (full, or partial at the right edge), or `None` if that tree has
    /// no such tile (tlog-tiles §Partial Tiles: empty tiles are never served).
    #[must_use]
    pub fn in_tree(level: u8, index: u64, size: u64) -> Option<Tile> {
        let shift = u32::from(level) * u32::from(TILE_HEIGHT);
        let at_level = size.checked_shr(shift).unwrap_or(0);
        let start = index.checked_mul(u64::from(TILE_WIDTH))?;
        let width = at_level.checked_sub(start)?.min(u64::from(TILE_WIDTH));
        (width > 0 && level < 64).then_some(Tile {
            level,
            index,
            width: width as u16,
            entries: false,
        })
    }

    /// The entry bundle with `index` as it is in a tree of `size` leaves.
    #[must_use]
    pub fn entries_in_tree(index: u64, size: u64) -> Option<Tile> {
        Tile::in_tree(0, index, size).map(|t| Tile { entries: true, ..t })
    }

    /// Whether the tile is partial (fewer than 256 hashes or entries).
    #[must_use]
    pub fn is_partial(&self) -> bool {
        self.width < TILE_WIDTH
    }

    /// The tile's path below the log prefix, e.g. `tile/1/x001/x234/067.p/8`
    /// or `tile/entries/000`.
    #[must_use]
    pub fn path(&self) -> String {
        let mut p = if self.entries {
            "tile/entries/".to_string()
        } else {
            format!("tile/{}/", self.level)
        };
        // <N>: zero-padded 3-digit path elements, all but the last prefixed with x.
        let mut groups = Vec::new();
        let mut n = self.index;
        loop {
            groups.push(n % 1000);
            n /= 1000;
            if n == 0 {
                break;
            }
        }
        for (i, g) in groups.iter().rev().enumerate() {
            if i + 1 < groups.len() {
                p.push_str(&format!("x{g:03}/"));
            } else {
                p.push_str(&format!("{g:03}"));
            }
        }
        if self.is_partial() {
            p.push_str(&format!(".p/{}", self.width));
        }
        p
    }

    /// Parses a tile path (as produced by [`Tile::path`]). Only the canonical
    /// form is accepted: no leading zeroes in `L` or `W`, no redundant `x000`
    /// groups, `L` in 0..=63, `W` in 1..=255.
    ///
    /// # Errors
    ///
    /// Returns [`Error::BadTile`] for anything else.
    pub fn parse_path(path: &str) -> Result<Tile, Error> {
        let bad = || Error::BadTile(format!("not a tile path: {path:?}"));
        let rest = path.strip_prefix("tile/").ok_or_else(bad)?;
        let (level, entries, rest) = if let Some(rest) = rest.strip_prefix("entries/") {
            (0, true, rest)
        } else {
            let (l, rest) = rest.split_once('/').ok_or_else(bad)?;
            let level: u8 = parse_decimal(l).ok_or_else(bad)?;
            if level > 63 {
                return Err(bad());
            }
            (level, false, rest)
        };
        let (n, width) = match rest.split_once(".p/") {
            Some((n, w)) => {
                let w: u16 = parse_decimal(w).ok_or_else(bad)?;
                if w == 0 || w >= TILE_WIDTH {
                    return Err(bad());
                }
                (n, w)
            }
            None => (rest, TILE_WIDTH),
        };
        let mut index: u64 = 0;
        let groups: Vec<&str> = n.split('/').collect();
        for (i, g) in groups.iter().enumerate() {
            let digits = if i + 1 < groups.len() {
                g.strip_prefix('x').ok_or_else(bad)?
            } else {
                g
            };
            if digits.len() != 3 || !digits.bytes().all(|b| b.is_ascii_digit()) {
                return Err(bad());
            }
            let g: u64 = digits.parse().map_err(|_| bad())?;
            index = index
                .checked_mul(1000)
                .and_then(|i| i.checked_add(g))
                .ok_or_else(bad)?;
        }
        let tile = Tile {
            level,
            index,
            width,
            entries,
        };
        // Canonical form only: re-encoding must give back the same path.
        if tile.path() != path {
            return Err(bad());
        }
        Ok(tile)
    }

    /// The stored-hash indexes of the hashes this (hash) tile carries, in order.
    fn stored_indexes(&self) -> impl Iterator<Item = u64> + '_ {
        let level = self.level * TILE_HEIGHT;
        let start = self.index * u64::from(TILE_WIDTH);
        (0..u64::from(self.width)).map(move |i| stored_hash_index(level, start + i))
    }
}

/// Parses a decimal with no leading zeroes (except `0` itself).
fn parse_decimal<T: std::str::FromStr>(s: &str) -> Option<T> {
    let canonical =
        !s.is_empty() && s.bytes().all(|b| b.is_ascii_digit()) && (s == "0" || !s.starts_with('0'));
    canonical.then(|| s.parse().ok()).flatten()
}

/// The contents of a hash tile, from stored hashes: the tile's hashes concatenated.
///
/// The caller decides whether the tile belongs to a tree it serves (see
/// [`Tile::in_tree`]); this only reads.
///
/// # Errors
///
/// Returns [`Error::BadTile`] for an entry bundle, and [`Error::Read`] if
/// `reader` fails.
pub fn read_tile_data<R: HashReader + ?Sized>(tile: &Tile, reader: &R) -> Result<Vec<u8>, Error> {
    if tile.entries {
        return Err(Error::BadTile(
            "entry bundles are not made of stored hashes".into(),
        ));
    }
    let indexes: Vec<u64> = tile.stored_indexes().collect();
    let hashes = read_exact(reader, &indexes)?;
    Ok(hashes.iter().flat_map(|h| h.0).collect())
}

/// Where a [`TileHashReader`] gets tiles: an HTTP client, a directory, a cache.
///
/// Contract: one byte string per tile asked, in order; each is the tile's
/// contents as served (its length is checked by the reader). Tiles are
/// untrusted: whatever is computed from them must be checked against a signed
/// checkpoint (a root compared, a proof verified).
pub trait TileSource {
    /// Fetches the given tiles.
    ///
    /// # Errors
    ///
    /// Any failure to produce every requested tile.
    fn read_tiles(&self, tiles: &[Tile]) -> Result<Vec<Vec<u8>>, ReadError>;
}

/// A [`HashReader`] over the tiles of a tree of a given size: roots and proofs
/// computed from tiles alone, as an auditor or witness does.
///
/// Results are only as trustworthy as the tiles: compare the root computed
/// with [`crate::tree_hash`] to a signed checkpoint, or verify the proofs.
pub struct TileHashReader<'a, S: TileSource + ?Sized> {
    size: u64,
    source: &'a S,
}

impl<'a, S: TileSource + ?Sized> TileHashReader<'a, S> {
    /// A reader over the tiles of the tree of `size` leaves.
    pub fn new(size: u64, source: &'a S) -> Self {
        TileHashReader { size, source }
    }
}

impl<S: TileSource + ?Sized> HashReader for TileHashReader<'_, S> {
    fn read_hashes(&self, indexes: &[u64]) -> Result<Vec<Hash>, ReadError> {
        // For each stored hash: the tile holding its subtree's hashes at the
        // tile level below it, and the span of them to fold.
        let mut wanted = Vec::with_capacity(indexes.len());
        let mut tiles: BTreeMap<Tile, usize> = BTreeMap::new();
        for &i in indexes {
            let (level, k) = split_stored_hash_index(i);
            let end = 1u64
                .checked_shl(u32::from(level))
                .and_then(|w| (k + 1).checked_mul(w));
            if end.is_none_or(|end| end > self.size) {
                return Err(
                    format!("stored hash {i} is not in a tree of size {}", self.size).into(),
                );
            }
            let (tile_level, height) = (level / TILE_HEIGHT, level % TILE_HEIGHT);
            let first = k << height; // index at tree level tile_level * 8
            let tile = Tile::in_tree(tile_level, first / u64::from(TILE_WIDTH), self.size)
                .ok_or_else(|| format!("no tile holds stored hash {i}"))?;
            let next = tiles.len();
            let slot = *tiles.entry(tile).or_insert(next);
            let offset = (first % u64::from(TILE_WIDTH)) as usize;
            wanted.push((slot, offset, 1usize << height));
        }
        let mut order: Vec<(Tile, usize)> = tiles.into_iter().collect();
        order.sort_by_key(|&(_, slot)| slot);
        let asked: Vec<Tile> = order.iter().map(|&(t, _)| t).collect();
        let data = self.source.read_tiles(&asked)?;
        if data.len() != asked.len() {
            return Err(format!(
                "tile source returned {} tiles for {}",
                data.len(),
                asked.len()
            )
            .into());
        }
        for (tile, bytes) in asked.iter().zip(&data) {
            if bytes.len() != usize::from(tile.width) * HASH_SIZE {
                return Err(format!(
                    "tile {} has {} bytes, want {}",
                    tile.path(),
                    bytes.len(),
                    usize::from(tile.width) * HASH_SIZE
                )
                .into());
            }
        }
        Ok(wanted
            .into_iter()
            .map(|(slot, offset, count)| {
                let bytes = &data[slot][offset * HASH_SIZE..(offset + count) * HASH_SIZE];
                perfect_root(bytes)
            })
            .collect())
    }
}

/// The root of a perfect subtree given its 2^h bottom hashes, concatenated.
fn perfect_root(bytes: &[u8]) -> Hash {
    let mut level: Vec<Hash> = bytes
        .chunks_exact(HASH_SIZE)
        .map(|c| Hash::from_slice(c).expect("chunk is a hash"))
        .collect();
    while level.len() > 1 {
        level = level
            .chunks_exact(2)
            .map(|p| node_hash(&p[0], &p[1]))
            .collect();
    }
    level[0]
}

/// Encodes entries as an entry bundle: each a big-endian u16 length and the
/// bytes (C2SP tlog-tiles §Log entries).
///
/// # Errors
///
/// Returns [`Error::BadBundle`] if an entry is longer than [`MAX_ENTRY_SIZE`].
pub fn encode_entry_bundle<E: AsRef<[u8]>>(entries: &[E]) -> Result<Vec<u8>, Error> {
    let mut out = Vec::with_capacity(entries.iter().map(|e| e.as_ref().len() + 2).sum());
    for e in entries {
        let e = e.as_ref();
        let len = u16::try_from(e.len())
            .map_err(|_| Error::BadBundle(format!("entry of {} bytes exceeds 65535", e.len())))?;
        out.extend_from_slice(&len.to_be_bytes());
        out.extend_from_slice(e);
    }
    Ok(out)
}

/// Decodes an entry bundle into its entries. Strict: every byte must belong
/// to an entry.
///
/// # Errors
///
/// Returns [`Error::BadBundle`] for a truncated length or entry.
pub fn decode_entry_bundle(mut bytes: &[u8]) -> Result<Vec<&[u8]>, Error> {
    let mut out = Vec::new();
    while !bytes.is_empty() {
        let [a, b, rest @ ..] = bytes else {
            return Err(Error::BadBundle("truncated entry length".into()));
        };
        let len = usize::from(u16::from_be_bytes([*a, *b]));
        if rest.len() < len {
            return Err(Error::BadBundle(format!(
                "entry {} wants {len} bytes, {} left",
                out.len(),
                rest.len()
            )));
        }
        out.push(&rest[..len]);
        bytes = &rest[len..];
    }
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn paths_from_the_spec() {
        let t = Tile {
            level: 0,
            index: 1_234_067,
            width: 256,
            entries: false,
        };
        assert_eq!(t.path(), "tile/0/x001/x234/067");
        let t = Tile {
            level: 2,
            index: 5,
            width: 17,
            entries: false,
        };
        assert_eq!(t.path(), "tile/2/005.p/17");
        let t = Tile {
            level: 0,
            index: 1000,
            width: 256,
            entries: true,
        };
        assert_eq!(t.path(), "tile/entries/x001/000");
        for p in [
            "tile/0/x001/x234/067",
            "tile/2/005.p/17",
            "tile/entries/x001/000",
            "tile/63/000",
        ] {
            assert_eq!(Tile::parse_path(p).unwrap().path(), p);
        }
    }

    #[test]
    fn non_canonical_paths_are_rejected() {
        for p in [
            "tile/00/000",
            "tile/64/000",
            "tile/0/5",
            "tile/0/0005",
            "tile/0/x000/005",
            "tile/0/001/002",
            "tile/0/000.p/0",
            "tile/0/000.p/256",
            "tile/0/000.p/08",
            "tile/0/000.p/",
            "tile/x/000",
            "tile/entries/00a",
            "tiles/0/000",
            "tile/0/x1/000",
        ] {
            assert!(Tile::parse_path(p).is_err(), "{p}");
        }
    }

    #[test]
    fn partial_tiles_of_a_70000_leaf_tree() {
        // C2SP tlog-tiles: 273 full level-0 tiles, a partial of width 112, one
        // full level-1 tile, a partial of width 17, a partial level-2 tile of width 1.
        assert_eq!(Tile::in_tree(0, 272, 70_000).unwrap().width, 256);
        assert_eq!(Tile::in_tree(0, 273, 70_000).unwrap().width, 112);
        assert!(Tile::in_tree(0, 274, 70_000).is_none());
        assert_eq!(Tile::in_tree(1, 0, 70_000).unwrap().width, 256);
        assert_eq!(Tile::in_tree(1, 1, 70_000).unwrap().width, 17);
        assert_eq!(Tile::in_tree(2, 0, 70_000).unwrap().width, 1);
        assert!(Tile::in_tree(3, 0, 70_000).is_none());
        assert_eq!(Tile::in_tree(1, 0, 256).unwrap().width, 1);
    }

    #[test]
    fn entry_bundles_round_trip_and_reject_garbage() {
        let entries: Vec<Vec<u8>> = vec![vec![], vec![1, 2, 3], vec![9; 300]];
        let b = encode_entry_bundle(&entries).unwrap();
        let back = decode_entry_bundle(&b).unwrap();
        assert_eq!(back, entries.iter().map(Vec::as_slice).collect::<Vec<_>>());
        assert!(decode_entry_bundle(&b[..b.len() - 1]).is_err());
        assert!(decode_entry_bundle(&[0]).is_err());
        assert!(encode_entry_bundle(&[vec![0u8; 65_536]]).is_err());
        assert!(encode_entry_bundle(&[vec![0u8; 65_535]]).is_ok());
    }
}
