//! Geo commands: GEOADD, GEOPOS, GEODIST, GEOHASH, GEOSEARCH(STORE) and the
//! GEORADIUS family, on sorted sets as in Redis.
//!
//! A place is a sorted-set member whose score is its 52-bit geohash:
//! longitude and latitude (Web Mercator's latitude limits) cut into 2^26
//! steps each, bits interleaved. A search estimates the geohash step whose
//! cell covers the radius, takes the cell of the center and its eight
//! neighbours (dropping those outside the bounding box), reads each cell's
//! score range from the sorted set and keeps the points whose great-circle
//! distance (haversine, Redis' earth radius) puts them in the circle or
//! box. This is a port of Redis 7.0's `geohash.c`, `geohash_helper.c` and
//! `geo.c`, step for step: which cells are read, in which order, decides
//! the order of unsorted results and which points `ANY` returns, and
//! replies are compared with Redis' byte for byte by the tests.

use std::f64::consts::PI;

use bytes::Bytes;

use super::flags::*;
use super::parse::{self, is};
use super::string::longdouble::LongDouble;
use super::zset::{parse_score, read, store, zadd};
use super::{CmdResult, CommandSpec, Ctx, KeySpec, one_key};
use crate::db::zset::{ScoreRange, ZSet};
use crate::resp::Reply;

const STEP_MAX: u8 = 26;
const LONG_MIN: f64 = -180.0;
const LONG_MAX: f64 = 180.0;
const LAT_MIN: f64 = -85.05112878;
const LAT_MAX: f64 = 85.05112878;
const EARTH_RADIUS_IN_METERS: f64 = 6372797.560856;
const MERCATOR_MAX: f64 = 20037726.37;
const D_R: f64 = PI / 180.0;

const ERR_NOT_FLOAT: &str = "ERR value is not a valid float";
const ERR_UNIT: &str = "ERR unsupported unit provided. please use M, KM, FT, MI";
const ERR_MEMBER: &str = "ERR could not decode requested zset member";

macro_rules! spec {
    ($name:literal, $arity:expr, $flags:expr, $keys:expr, $h:expr, $since:literal, $summary:literal) => {
        CommandSpec {
            name: $name,
            arity: $arity,
            flags: $flags,
            keys: $keys,
            group: "geo",
            summary: $summary,
            since: $since,
            complexity: "O(log(N)) for each item, or O(N+log(M)) for a search (N elements in the area, M in the index)",
            handler: $h,
            subcommands: &[],
        }
    };
}

const KEY1: KeySpec = one_key();

pub static COMMANDS: &[CommandSpec] = &[
    spec!(
        "geoadd",
        -5,
        WRITE | DENYOOM,
        KEY1,
        geoadd,
        "3.2.0",
        "Add one or more geospatial items in the geospatial index represented using a sorted set"
    ),
    spec!(
        "geodist",
        -4,
        READONLY,
        KEY1,
        geodist,
        "3.2.0",
        "Returns the distance between two members of a geospatial index"
    ),
    spec!(
        "geohash",
        -2,
        READONLY,
        KEY1,
        geohash,
        "3.2.0",
        "Returns members of a geospatial index as standard geohash strings"
    ),
    spec!(
        "geopos",
        -2,
        READONLY,
        KEY1,
        geopos,
        "3.2.0",
        "Returns longitude and latitude of members of a geospatial index"
    ),
    spec!(
        "georadius",
        -6,
        WRITE | DENYOOM,
        KeySpec::Custom(radius_keys),
        georadius,
        "3.2.0",
        "Query a sorted set representing a geospatial index to fetch members matching a given maximum distance from a point"
    ),
    spec!(
        "georadius_ro",
        -6,
        READONLY,
        KEY1,
        georadius_ro,
        "3.2.10",
        "A read-only variant for GEORADIUS"
    ),
    spec!(
        "georadiusbymember",
        -5,
        WRITE | DENYOOM,
        KeySpec::Custom(radius_keys),
        georadiusbymember,
        "3.2.0",
        "Query a sorted set representing a geospatial index to fetch members matching a given maximum distance from a member"
    ),
    spec!(
        "georadiusbymember_ro",
        -5,
        READONLY,
        KEY1,
        georadiusbymember_ro,
        "3.2.10",
        "A read-only variant for GEORADIUSBYMEMBER"
    ),
    spec!(
        "geosearch",
        -7,
        READONLY,
        KEY1,
        geosearch,
        "6.2.0",
        "Query a sorted set representing a geospatial index to fetch members inside an area of a box or a circle."
    ),
    spec!(
        "geosearchstore",
        -8,
        WRITE | DENYOOM,
        KeySpec::Range {
            first: 1,
            last: 2,
            step: 1
        },
        geosearchstore,
        "6.2.0",
        "Query a sorted set representing a geospatial index to fetch members inside an area of a box or a circle, and store the result in another key."
    ),
];

/// GEORADIUS[BYMEMBER]: the index and every STORE / STOREDIST target (the
/// last one is written; all are named, as Redis' key specs do).
fn radius_keys(args: &[&[u8]]) -> Vec<usize> {
    let mut keys = vec![1];
    let mut i = 5;
    while i < args.len() {
        if (is(args[i], "STORE") || is(args[i], "STOREDIST")) && i + 1 < args.len() {
            keys.push(i + 1);
            i += 1;
        }
        i += 1;
    }
    keys
}

// ---- geohash (Redis' geohash.c) ---------------------------------------------

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
struct Cell {
    bits: u64,
    step: u8,
}

impl Cell {
    const ZERO: Cell = Cell { bits: 0, step: 0 };
    fn is_zero(&self) -> bool {
        self.bits == 0 && self.step == 0
    }
}

#[derive(Clone, Copy, Debug)]
struct Range {
    min: f64,
    max: f64,
}

#[derive(Clone, Copy, Debug)]
struct Area {
    lon: Range,
    lat: Range,
}

const MERCATOR_LON: Range = Range {
    min: LONG_MIN,
    max: LONG_MAX,
};
const MERCATOR_LAT: Range = Range {
    min: LAT_MIN,
    max: LAT_MAX,
};

fn interleave64(xlo: u32, ylo: u32) -> u64 {
    const B: [u64; 5] = [
        0x5555555555555555,
        0x3333333333333333,
        0x0F0F0F0F0F0F0F0F,
        0x00FF00FF00FF00FF,
        0x0000FFFF0000FFFF,
    ];
    const S: [u32; 5] = [1, 2, 4, 8, 16];
    let (mut x, mut y) = (xlo as u64, ylo as u64);
    for i in (0..5).rev() {
        x = (x | (x << S[i])) & B[i];
        y = (y | (y << S[i])) & B[i];
    }
    x | (y << 1)
}

fn deinterleave64(v: u64) -> u64 {
    const B: [u64; 6] = [
        0x5555555555555555,
        0x3333333333333333,
        0x0F0F0F0F0F0F0F0F,
        0x00FF00FF00FF00FF,
        0x0000FFFF0000FFFF,
        0x00000000FFFFFFFF,
    ];
    const S: [u32; 6] = [0, 1, 2, 4, 8, 16];
    let (mut x, mut y) = (v, v >> 1);
    for i in 0..6 {
        x = (x | (x >> S[i])) & B[i];
        y = (y | (y >> S[i])) & B[i];
    }
    x | (y << 32)
}

/// `geohashEncode`: `None` outside the ranges (and the Mercator limits).
fn encode(lon_r: Range, lat_r: Range, lon: f64, lat: f64, step: u8) -> Option<Cell> {
    if step == 0 || step > 32 {
        return None;
    }
    if !(LONG_MIN..=LONG_MAX).contains(&lon) || !(LAT_MIN..=LAT_MAX).contains(&lat) {
        return None;
    }
    if lat < lat_r.min || lat > lat_r.max || lon < lon_r.min || lon > lon_r.max {
        return None;
    }
    let lat_offset = (lat - lat_r.min) / (lat_r.max - lat_r.min) * (1u64 << step) as f64;
    let lon_offset = (lon - lon_r.min) / (lon_r.max - lon_r.min) * (1u64 << step) as f64;
    Some(Cell {
        bits: interleave64(lat_offset as u32, lon_offset as u32),
        step,
    })
}

/// `geohashDecode`: the cell's area (`None` for the zero cell).
fn decode(lon_r: Range, lat_r: Range, c: Cell) -> Option<Area> {
    if c.is_zero() {
        return None;
    }
    let sep = deinterleave64(c.bits);
    let (ilato, ilono) = (sep as u32 as f64, (sep >> 32) as u32 as f64);
    let div = (1u64 << c.step) as f64;
    let (lat_scale, lon_scale) = (lat_r.max - lat_r.min, lon_r.max - lon_r.min);
    Some(Area {
        lat: Range {
            min: lat_r.min + (ilato / div) * lat_scale,
            max: lat_r.min + ((ilato + 1.0) / div) * lat_scale,
        },
        lon: Range {
            min: lon_r.min + (ilono / div) * lon_scale,
            max: lon_r.min + ((ilono + 1.0) / div) * lon_scale,
        },
    })
}

/// Redis' `(uint64_t)score` as compiled for x86-64 (conversions through
/// the signed `cvttsd2si`, whose out-of-range result is `i64::MIN`), so a
/// score no GEOADD wrote (negative, huge) decodes to the same place.
fn score_bits(score: f64) -> u64 {
    const TWO_63: f64 = 9_223_372_036_854_775_808.0;
    let cvtt = |x: f64| {
        if x.is_nan() || !(-TWO_63..TWO_63).contains(&x) {
            i64::MIN
        } else {
            x as i64
        }
    };
    if score < TWO_63 {
        cvtt(score) as u64
    } else {
        (cvtt(score - TWO_63) as u64) ^ (1 << 63)
    }
}

/// A member's score back to (longitude, latitude): the center of its cell.
fn decode_score(score: f64) -> (f64, f64) {
    let cell = Cell {
        bits: score_bits(score),
        step: STEP_MAX,
    };
    let a = decode(MERCATOR_LON, MERCATOR_LAT, cell).unwrap_or(Area {
        lon: MERCATOR_LON,
        lat: MERCATOR_LAT,
    });
    let lon = ((a.lon.min + a.lon.max) / 2.0).clamp(LONG_MIN, LONG_MAX);
    let lat = ((a.lat.min + a.lat.max) / 2.0).clamp(LAT_MIN, LAT_MAX);
    (lon, lat)
}

fn move_x(c: &mut Cell, d: i8) {
    // The zero cell (step 0) has no neighbours; the shifts below need a step.
    if d == 0 || c.step == 0 {
        return;
    }
    let mut x = c.bits & 0xaaaaaaaaaaaaaaaa;
    let y = c.bits & 0x5555555555555555;
    let zz = 0x5555555555555555u64 >> (64 - c.step as u32 * 2);
    if d > 0 {
        x = x.wrapping_add(zz + 1);
    } else {
        x |= zz;
        x = x.wrapping_sub(zz + 1);
    }
    x &= 0xaaaaaaaaaaaaaaaau64 >> (64 - c.step as u32 * 2);
    c.bits = x | y;
}

fn move_y(c: &mut Cell, d: i8) {
    // The zero cell (step 0) has no neighbours; the shifts below need a step.
    if d == 0 || c.step == 0 {
        return;
    }
    let x = c.bits & 0xaaaaaaaaaaaaaaaa;
    let mut y = c.bits & 0x5555555555555555;
    let zz = 0xaaaaaaaaaaaaaaaau64 >> (64 - c.step as u32 * 2);
    if d > 0 {
        y = y.wrapping_add(zz + 1);
    } else {
        y |= zz;
        y = y.wrapping_sub(zz + 1);
    }
    y &= 0x5555555555555555u64 >> (64 - c.step as u32 * 2);
    c.bits = x | y;
}

/// The eight neighbours, in the order Redis reads them after the center:
/// north, south, east, west, north-east, north-west, south-east, south-west.
fn neighbors(c: Cell) -> [Cell; 8] {
    let at = |dx: i8, dy: i8| {
        let mut n = c;
        move_x(&mut n, dx);
        move_y(&mut n, dy);
        n
    };
    [
        at(0, 1),
        at(0, -1),
        at(1, 0),
        at(-1, 0),
        at(1, 1),
        at(-1, 1),
        at(1, -1),
        at(-1, -1),
    ]
}

// ---- geohash_helper.c ---------------------------------------------------

fn deg_rad(a: f64) -> f64 {
    a * D_R
}

fn rad_deg(a: f64) -> f64 {
    a / D_R
}

fn estimate_steps(mut range_m: f64, lat: f64) -> u8 {
    if range_m == 0.0 {
        return 26;
    }
    let mut step: i32 = 1;
    while range_m < MERCATOR_MAX {
        range_m *= 2.0;
        step += 1;
    }
    step -= 2;
    if !(-66.0..=66.0).contains(&lat) {
        step -= 1;
        if !(-80.0..=80.0).contains(&lat) {
            step -= 1;
        }
    }
    step.clamp(1, 26) as u8
}

fn lat_distance(lat1: f64, lat2: f64) -> f64 {
    EARTH_RADIUS_IN_METERS * (deg_rad(lat2) - deg_rad(lat1)).abs()
}

/// Great-circle distance in meters (haversine), as Redis computes it.
fn distance(lon1: f64, lat1: f64, lon2: f64, lat2: f64) -> f64 {
    let (lon1r, lon2r) = (deg_rad(lon1), deg_rad(lon2));
    let v = ((lon2r - lon1r) / 2.0).sin();
    if v == 0.0 {
        return lat_distance(lat1, lat2);
    }
    let (lat1r, lat2r) = (deg_rad(lat1), deg_rad(lat2));
    let u = ((lat2r - lat1r) / 2.0).sin();
    let a = u * u + lat1r.cos() * lat2r.cos() * v * v;
    2.0 * EARTH_RADIUS_IN_METERS * a.sqrt().asin()
}

#[derive(Clone, Copy)]
enum Kind {
    Circle { radius: f64 },
    Box { width: f64, height: f64 },
}

#[derive(Clone, Copy)]
struct Shape {
    kind: Kind,
    lon: f64,
    lat: f64,
    /// Meters per unit of the query.
    conversion: f64,
}

impl Shape {
    /// `geohashBoundingBox`: [min lon, min lat, max lon, max lat].
    fn bounds(&self) -> [f64; 4] {
        let (h, w) = match self.kind {
            Kind::Circle { radius } => (radius, radius),
            Kind::Box { width, height } => (height / 2.0, width / 2.0),
        };
        let (height, width) = (self.conversion * h, self.conversion * w);
        let lat_delta = rad_deg(height / EARTH_RADIUS_IN_METERS);
        let lon_top = rad_deg(width / EARTH_RADIUS_IN_METERS / deg_rad(self.lat + lat_delta).cos());
        let lon_bottom = rad_deg(width / EARTH_RADIUS_IN_METERS / deg_rad(self.lat - lat_delta).cos());
        let lon_delta = if self.lat < 0.0 { lon_bottom } else { lon_top };
        [
            self.lon - lon_delta,
            self.lat - lat_delta,
            self.lon + lon_delta,
            self.lat + lat_delta,
        ]
    }

    /// `geohashCalculateAreasByShapeWGS84`: the cells to read, in order
    /// (center first; dropped neighbours are the zero cell).
    fn cells(&self) -> [Cell; 9] {
        let [min_lon, min_lat, max_lon, max_lat] = self.bounds();
        let radius_m = match self.kind {
            Kind::Circle { radius } => radius,
            Kind::Box { width, height } => ((width / 2.0) * (width / 2.0) + (height / 2.0) * (height / 2.0)).sqrt(),
        } * self.conversion;
        let mut steps = estimate_steps(radius_m, self.lat);
        let at = |steps: u8| {
            let hash = encode(MERCATOR_LON, MERCATOR_LAT, self.lon, self.lat, steps).unwrap_or(Cell::ZERO);
            (hash, neighbors(hash))
        };
        let (mut hash, mut n) = at(steps);
        let dec = |c: Cell| decode(MERCATOR_LON, MERCATOR_LAT, c);
        let decrease = match (dec(n[0]), dec(n[1]), dec(n[2]), dec(n[3])) {
            (Some(north), Some(south), Some(east), Some(west)) => {
                north.lat.max < max_lat || south.lat.min > min_lat || east.lon.max < max_lon || west.lon.min > min_lon
            }
            _ => false,
        };
        if steps > 1 && decrease {
            steps -= 1;
            (hash, n) = at(steps);
        }
        if steps >= 2
            && let Some(area) = dec(hash)
        {
            // Indexes into `n`: north 0, south 1, east 2, west 3, NE 4, NW 5, SE 6, SW 7.
            let mut drop = |idx: [usize; 3]| idx.iter().for_each(|&i| n[i] = Cell::ZERO);
            if area.lat.min < min_lat {
                drop([1, 7, 6]);
            }
            if area.lat.max > max_lat {
                drop([0, 4, 5]);
            }
            if area.lon.min < min_lon {
                drop([3, 7, 5]);
            }
            if area.lon.max > max_lon {
                drop([2, 6, 4]);
            }
        }
        [hash, n[0], n[1], n[2], n[3], n[4], n[5], n[6], n[7]]
    }

    /// `geoWithinShape`: the point of `score`, and its distance from the
    /// center in meters, when it is inside.
    fn contains(&self, score: f64) -> Option<(f64, f64, f64)> {
        let (lon, lat) = decode_score(score);
        let d = match self.kind {
            Kind::Circle { radius } => {
                let d = distance(self.lon, self.lat, lon, lat);
                (d <= radius * self.conversion).then_some(d)?
            }
            Kind::Box { width, height } => {
                let (w, h) = (width * self.conversion, height * self.conversion);
                if lat_distance(lat, self.lat) > h / 2.0 || distance(lon, lat, self.lon, lat) > w / 2.0 {
                    return None;
                }
                distance(self.lon, self.lat, lon, lat)
            }
        };
        Some((lon, lat, d))
    }
}

/// A cell's scores: `[min, max)` at 52 bits (`scoresOfGeoHashBox`).
fn cell_scores(c: Cell) -> (f64, f64) {
    let shift = 52 - c.step as u32 * 2;
    ((c.bits << shift) as f64, ((c.bits + 1) << shift) as f64)
}

struct Point {
    member: Bytes,
    score: f64,
    lon: f64,
    lat: f64,
    dist: f64,
}

/// `membersOfAllNeighbors`: the points inside `shape`, cell by cell, stopping
/// at `limit` points (0: all). A cell equal to the last one read is skipped
/// (huge radii make neighbours wrap onto each other).
fn points_within(z: &ZSet, shape: &Shape, limit: usize) -> Vec<Point> {
    let cells = shape.cells();
    let mut out = Vec::new();
    // Redis tests its `last_processed` index for truth, so a neighbour equal
    // to the center cell (index 0) is read again; kept for identical replies.
    let mut last = 0;
    for (i, c) in cells.iter().enumerate() {
        if c.is_zero() {
            continue;
        }
        if last != 0 && cells[last] == *c {
            continue;
        }
        if limit > 0 && out.len() >= limit {
            break;
        }
        let (min, max) = cell_scores(*c);
        let range = ScoreRange {
            min,
            max,
            min_ex: false,
            max_ex: true,
        };
        let (lo, hi) = z.score_ranks(&range);
        for (m, score) in z.iter_from(lo, false).take(hi - lo) {
            if let Some((lon, lat, dist)) = shape.contains(score) {
                out.push(Point {
                    member: Bytes::copy_from_slice(m),
                    score,
                    lon,
                    lat,
                    dist,
                });
            }
            if limit > 0 && out.len() >= limit {
                break;
            }
        }
        last = i;
    }
    out
}

// ---- replies -----------------------------------------------------------------

/// `fixedpoint_d2string(d, 4)`: a distance with four decimals.
fn distance_text(d: f64) -> String {
    if d == 0.0 {
        return "0.0000".into();
    }
    let v = (d * 10_000.0).round_ties_even() as i64;
    let s = format!("{:05}", v.unsigned_abs());
    let (int, frac) = s.split_at(s.len() - 4);
    format!("{}{int}.{frac}", if v < 0 { "-" } else { "" })
}

/// A coordinate as Redis' `addReplyHumanLongDouble`.
fn coord(v: f64) -> Reply {
    Reply::DoubleText(LongDouble::from_f64(v).to_human())
}

fn unit(arg: &[u8]) -> Result<f64, Reply> {
    Ok(match () {
        _ if is(arg, "m") => 1.0,
        _ if is(arg, "km") => 1000.0,
        _ if is(arg, "ft") => 0.3048,
        _ if is(arg, "mi") => 1609.34,
        _ => return Err(Reply::err(ERR_UNIT)),
    })
}

fn float(arg: &[u8], err: &'static str) -> Result<f64, Reply> {
    parse_score(arg).ok_or_else(|| Reply::err(err))
}

/// `extractLongLatOrReply`.
fn lon_lat(args: &[&[u8]]) -> Result<(f64, f64), Reply> {
    let lon = float(args[0], ERR_NOT_FLOAT)?;
    let lat = float(args[1], ERR_NOT_FLOAT)?;
    if !(LONG_MIN..=LONG_MAX).contains(&lon) || !(LAT_MIN..=LAT_MAX).contains(&lat) {
        return Err(Reply::err(format!(
            "ERR invalid longitude,latitude pair {lon:.6},{lat:.6}"
        )));
    }
    Ok((lon, lat))
}

/// `extractDistanceOrReply`: a radius and its unit.
fn radius(args: &[&[u8]]) -> Result<(f64, f64), Reply> {
    let r = float(args[0], "ERR need numeric radius")?;
    if r < 0.0 {
        return Err(Reply::err("ERR radius cannot be negative"));
    }
    Ok((r, unit(args[1])?))
}

// ---- commands ----------------------------------------------------------------

/// GEOADD: ZADD with each longitude/latitude pair turned into its score.
fn geoadd(ctx: &mut Ctx, args: &[&[u8]]) -> CmdResult {
    let (mut nx, mut xx) = (false, false);
    let mut first = 2;
    while first < args.len() {
        match () {
            _ if is(args[first], "nx") => nx = true,
            _ if is(args[first], "xx") => xx = true,
            _ if is(args[first], "ch") => {}
            _ => break,
        }
        first += 1;
    }
    if !(args.len() - first).is_multiple_of(3) || (xx && nx) {
        return Err(parse::syntax());
    }
    let mut scores = Vec::new();
    for triple in args[first..].chunks(3) {
        let (lon, lat) = lon_lat(triple)?;
        let cell = encode(MERCATOR_LON, MERCATOR_LAT, lon, lat, STEP_MAX).unwrap_or(Cell::ZERO);
        scores.push(
            itoa::Buffer::new()
                .format(cell.bits << (52 - STEP_MAX as u32 * 2))
                .to_string(),
        );
    }
    let mut zargs: Vec<&[u8]> = Vec::with_capacity(first + scores.len() * 2);
    zargs.push(b"zadd");
    zargs.extend_from_slice(&args[1..first]);
    for (triple, score) in args[first..].chunks(3).zip(&scores) {
        zargs.push(score.as_bytes());
        zargs.push(triple[2]);
    }
    zadd(ctx, &zargs)
}

fn geodist(ctx: &mut Ctx, args: &[&[u8]]) -> CmdResult {
    let to_meters = match args.len() {
        4 => 1.0,
        5 => unit(args[4])?,
        _ => return Err(parse::syntax()),
    };
    let Some(z) = read(ctx, args[1])? else {
        return Ok(Reply::Null);
    };
    let (Some(s1), Some(s2)) = (z.score(args[2]), z.score(args[3])) else {
        return Ok(Reply::Null);
    };
    let ((lon1, lat1), (lon2, lat2)) = (decode_score(s1), decode_score(s2));
    Ok(Reply::bulk(distance_text(distance(lon1, lat1, lon2, lat2) / to_meters)))
}

fn geohash(ctx: &mut Ctx, args: &[&[u8]]) -> CmdResult {
    const ALPHABET: &[u8; 32] = b"0123456789bcdefghjkmnpqrstuvwxyz";
    let z = read(ctx, args[1])?;
    let out = args[2..]
        .iter()
        .map(|m| match z.and_then(|z| z.score(m)) {
            None => Reply::Null,
            Some(score) => {
                // The standard geohash uses latitudes ±90, not Mercator's.
                let (lon, lat) = decode_score(score);
                let world = (
                    Range {
                        min: -180.0,
                        max: 180.0,
                    },
                    Range { min: -90.0, max: 90.0 },
                );
                let bits = encode(world.0, world.1, lon, lat, 26).map_or(0, |c| c.bits);
                let text: Vec<u8> = (0..11)
                    .map(|i| {
                        let idx = if i == 10 {
                            0
                        } else {
                            (bits >> (52 - (i + 1) * 5)) & 0x1f
                        };
                        ALPHABET[idx as usize]
                    })
                    .collect();
                Reply::Bulk(text.into())
            }
        })
        .collect();
    Ok(Reply::Array(out))
}

fn geopos(ctx: &mut Ctx, args: &[&[u8]]) -> CmdResult {
    let z = read(ctx, args[1])?;
    let out = args[2..]
        .iter()
        .map(|m| match z.and_then(|z| z.score(m)) {
            None => Reply::NullArray,
            Some(score) => {
                let (lon, lat) = decode_score(score);
                Reply::Array(vec![coord(lon), coord(lat)])
            }
        })
        .collect();
    Ok(Reply::Array(out))
}

/// How a search names its center and area (Redis' `georadiusGeneric` flags).
#[derive(Clone, Copy, PartialEq)]
enum Form {
    /// GEORADIUS: longitude, latitude, radius, unit.
    Coords { store: bool },
    /// GEORADIUSBYMEMBER: member, radius, unit.
    Member { store: bool },
    /// GEOSEARCH / GEOSEARCHSTORE: FROM... and BY... options.
    Search { store: bool },
}

fn georadius(ctx: &mut Ctx, args: &[&[u8]]) -> CmdResult {
    radius_generic(ctx, args, 1, Form::Coords { store: true })
}

fn georadius_ro(ctx: &mut Ctx, args: &[&[u8]]) -> CmdResult {
    radius_generic(ctx, args, 1, Form::Coords { store: false })
}

fn georadiusbymember(ctx: &mut Ctx, args: &[&[u8]]) -> CmdResult {
    radius_generic(ctx, args, 1, Form::Member { store: true })
}

fn georadiusbymember_ro(ctx: &mut Ctx, args: &[&[u8]]) -> CmdResult {
    radius_generic(ctx, args, 1, Form::Member { store: false })
}

fn geosearch(ctx: &mut Ctx, args: &[&[u8]]) -> CmdResult {
    radius_generic(ctx, args, 1, Form::Search { store: false })
}

fn geosearchstore(ctx: &mut Ctx, args: &[&[u8]]) -> CmdResult {
    radius_generic(ctx, args, 2, Form::Search { store: true })
}

#[derive(Clone, Copy, PartialEq)]
enum Order {
    None,
    Asc,
    Desc,
}

/// `georadiusGeneric`, in Redis' order of checks and replies.
fn radius_generic(ctx: &mut Ctx, args: &[&[u8]], src: usize, form: Form) -> CmdResult {
    let name = String::from_utf8_lossy(args[0]).into_owned();
    let exists = read(ctx, args[src])?.is_some();
    let member_lon_lat = |ctx: &mut Ctx, m: &[u8]| -> Result<(f64, f64), Reply> {
        let z = ctx.ks.get_obj::<ZSet>(args[src]).ok().flatten();
        z.and_then(|z| z.score(m))
            .map(decode_score)
            .ok_or_else(|| Reply::err(ERR_MEMBER))
    };
    let mut center = (0.0, 0.0);
    let mut kind = Kind::Circle { radius: 0.0 };
    let mut conversion = 1.0;
    let mut store: Option<&[u8]> = None;
    let mut storedist = false;
    let base = match form {
        Form::Coords { .. } => {
            center = lon_lat(&args[2..4])?;
            let (r, c) = radius(&args[4..6])?;
            (kind, conversion) = (Kind::Circle { radius: r }, c);
            6
        }
        Form::Member { .. } if !exists => 5,
        Form::Member { .. } => {
            center = member_lon_lat(ctx, args[2])?;
            let (r, c) = radius(&args[3..5])?;
            (kind, conversion) = (Kind::Circle { radius: r }, c);
            5
        }
        Form::Search { store: true } => {
            store = Some(args[1]);
            3
        }
        Form::Search { store: false } => 2,
    };
    let search = matches!(form, Form::Search { .. });
    let may_store = matches!(form, Form::Coords { store: true } | Form::Member { store: true });
    let (mut withdist, mut withhash, mut withcoord, mut any) = (false, false, false, false);
    let (mut frommember, mut fromloc, mut byradius, mut bybox) = (false, false, false, false);
    let mut order = Order::None;
    let mut count: i64 = 0;
    let rest = &args[base..];
    let mut i = 0;
    while i < rest.len() {
        let a = rest[i];
        let left = rest.len() - i - 1;
        if is(a, "withdist") {
            withdist = true;
        } else if is(a, "withhash") {
            withhash = true;
        } else if is(a, "withcoord") {
            withcoord = true;
        } else if is(a, "any") {
            any = true;
        } else if is(a, "asc") {
            order = Order::Asc;
        } else if is(a, "desc") {
            order = Order::Desc;
        } else if is(a, "count") && left >= 1 {
            count = parse::int(rest[i + 1])?;
            if count <= 0 {
                return Err(Reply::err("ERR COUNT must be > 0"));
            }
            i += 1;
        } else if (is(a, "store") || is(a, "storedist")) && left >= 1 && may_store {
            store = Some(rest[i + 1]);
            storedist = is(a, "storedist");
            i += 1;
        } else if is(a, "storedist") && form == (Form::Search { store: true }) {
            storedist = true;
        } else if is(a, "frommember") && left >= 1 && search && !fromloc {
            if exists {
                center = member_lon_lat(ctx, rest[i + 1])?;
            }
            frommember = true;
            i += 1;
        } else if is(a, "fromlonlat") && left >= 2 && search && !frommember {
            center = lon_lat(&rest[i + 1..i + 3])?;
            fromloc = true;
            i += 2;
        } else if is(a, "byradius") && left >= 2 && search && !bybox {
            let (r, c) = radius(&rest[i + 1..i + 3])?;
            (kind, conversion) = (Kind::Circle { radius: r }, c);
            byradius = true;
            i += 2;
        } else if is(a, "bybox") && left >= 3 && search && !byradius {
            let w = float(rest[i + 1], "ERR need numeric width")?;
            let h = float(rest[i + 2], "ERR need numeric height")?;
            if h < 0.0 || w < 0.0 {
                return Err(Reply::err("ERR height or width cannot be negative"));
            }
            conversion = unit(rest[i + 3])?;
            kind = Kind::Box { width: w, height: h };
            bybox = true;
            i += 3;
        } else {
            return Err(parse::syntax());
        }
        i += 1;
    }
    if store.is_some() && (withdist || withhash || withcoord) {
        let what = if form == (Form::Search { store: true }) {
            "GEOSEARCHSTORE"
        } else {
            "STORE option in GEORADIUS"
        };
        return Err(Reply::err(format!(
            "ERR {what} is not compatible with WITHDIST, WITHHASH and WITHCOORD options"
        )));
    }
    if search && !(frommember || fromloc) {
        return Err(Reply::err(format!(
            "ERR exactly one of FROMMEMBER or FROMLONLAT can be specified for {name}"
        )));
    }
    if search && !(byradius || bybox) {
        return Err(Reply::err(format!(
            "ERR exactly one of BYRADIUS and BYBOX can be specified for {name}"
        )));
    }
    if any && count == 0 {
        return Err(Reply::err("ERR the ANY argument requires COUNT argument"));
    }
    if !exists {
        return Ok(match store {
            Some(dst) => Reply::Int(store_points(ctx, dst, Vec::new(), false, 1.0, search)),
            None => Reply::Array(Vec::new()),
        });
    }
    if count != 0 && order == Order::None && !any {
        order = Order::Asc;
    }
    let shape = Shape {
        kind,
        lon: center.0,
        lat: center.1,
        conversion,
    };
    let limit = if any { count as usize } else { 0 };
    let mut points = match ctx.ks.get_obj::<ZSet>(args[src]) {
        Ok(Some(z)) => points_within(z, &shape, limit),
        _ => Vec::new(),
    };
    let returned = if count == 0 {
        points.len()
    } else {
        points.len().min(count as usize)
    };
    match order {
        Order::Asc => points.sort_by(|a, b| a.dist.partial_cmp(&b.dist).unwrap_or(std::cmp::Ordering::Equal)),
        Order::Desc => points.sort_by(|a, b| b.dist.partial_cmp(&a.dist).unwrap_or(std::cmp::Ordering::Equal)),
        Order::None => {}
    }
    points.truncate(returned);
    if let Some(dst) = store {
        return Ok(Reply::Int(store_points(
            ctx, dst, points, storedist, conversion, search,
        )));
    }
    let with = withdist || withhash || withcoord;
    let out = points
        .into_iter()
        .map(|p| {
            if !with {
                return Reply::Bulk(p.member);
            }
            let mut item = vec![Reply::Bulk(p.member)];
            if withdist {
                item.push(Reply::bulk(distance_text(p.dist / conversion)));
            }
            if withhash {
                item.push(Reply::Int(p.score as i64));
            }
            if withcoord {
                item.push(Reply::Array(vec![coord(p.lon), coord(p.lat)]));
            }
            Reply::Array(item)
        })
        .collect();
    Ok(Reply::Array(out))
}

/// STORE / STOREDIST: a sorted set of the points (scored by geohash or by
/// distance in the query's unit); nothing found deletes the destination.
fn store_points(ctx: &mut Ctx, dst: &[u8], points: Vec<Point>, storedist: bool, conversion: f64, search: bool) -> i64 {
    let items = points
        .into_iter()
        .map(|p| (p.member, if storedist { p.dist / conversion } else { p.score }))
        .collect();
    store(
        ctx,
        dst,
        items,
        if search { "geosearchstore" } else { "georadiusstore" },
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn interleave_round_trips() {
        for (x, y) in [(0u32, 0u32), (1, 0), (0, 1), (0x3ff_ffff, 0x155_5555), (u32::MAX, 7)] {
            let d = deinterleave64(interleave64(x, y));
            assert_eq!((d as u32, (d >> 32) as u32), (x, y));
        }
    }

    #[test]
    fn a_point_survives_encoding_within_a_cell() {
        let c = encode(MERCATOR_LON, MERCATOR_LAT, 13.361389, 38.115556, STEP_MAX).unwrap();
        let (lon, lat) = decode_score(c.bits as f64);
        assert!(
            (lon - 13.361389).abs() < 1e-5 && (lat - 38.115556).abs() < 1e-5,
            "{lon} {lat}"
        );
        assert_eq!(encode(MERCATOR_LON, MERCATOR_LAT, 0.0, 86.0, STEP_MAX), None);
    }

    #[test]
    fn distances_print_with_four_decimals() {
        assert_eq!(distance_text(0.0), "0.0000");
        assert_eq!(distance_text(166274.15156960033), "166274.1516");
        assert_eq!(distance_text(0.00004), "0.0000");
        assert_eq!(distance_text(0.5), "0.5000");
    }
}
