//! Geo commands against Redis 7.0.15: the same places added to both servers,
//! then positions, distances, geohashes and a few hundred searches (circles
//! and boxes of every size, every unit, from coordinates and from members,
//! sorted or in scan order, COUNT with and without ANY, STORE/STOREDIST)
//! whose replies must be identical — which also checks that the search reads
//! the same cells in the same order as Redis.

// Test code: an unexpected value should fail the test right where it appears.
#![allow(clippy::unwrap_used)]

mod support;

use support::Diff;

/// A small deterministic generator (xorshift64*): the same places every run.
struct Rng(u64);

impl Rng {
    fn next(&mut self) -> u64 {
        self.0 ^= self.0 >> 12;
        self.0 ^= self.0 << 25;
        self.0 ^= self.0 >> 27;
        self.0.wrapping_mul(0x2545F4914F6CDD1D)
    }
    /// Uniform in [lo, hi).
    fn range(&mut self, lo: f64, hi: f64) -> f64 {
        lo + (self.next() >> 11) as f64 / (1u64 << 53) as f64 * (hi - lo)
    }
}

fn check_all(d: &mut Diff, cmds: &[Vec<String>]) {
    for c in cmds {
        let args: Vec<&str> = c.iter().map(String::as_str).collect();
        d.check(&args);
    }
}

fn cmd(parts: &[&str]) -> Vec<String> {
    parts.iter().map(|s| s.to_string()).collect()
}

#[test]
fn positions_distances_and_hashes_match_redis() {
    let mut d = Diff::new();
    check_all(
        &mut d,
        &[
            cmd(&[
                "GEOADD",
                "Sicily",
                "13.361389",
                "38.115556",
                "Palermo",
                "15.087269",
                "37.502669",
                "Catania",
            ]),
            cmd(&[
                "GEOADD", "Sicily", "NX", "13.0", "38.0", "Palermo", "12.5", "37.8", "Marsala",
            ]),
            cmd(&[
                "GEOADD",
                "Sicily",
                "XX",
                "CH",
                "13.361389",
                "38.2",
                "Palermo",
                "1",
                "1",
                "nowhere",
            ]),
            cmd(&[
                "GEOADD",
                "poles",
                "-180",
                "-85.05112878",
                "sw",
                "180",
                "85.05112878",
                "ne",
                "0",
                "0",
                "null",
            ]),
            cmd(&["ZRANGE", "Sicily", "0", "-1", "WITHSCORES"]),
            cmd(&["GEOPOS", "Sicily", "Palermo", "Catania", "missing"]),
            cmd(&["GEOPOS", "poles", "sw", "ne", "null"]),
            cmd(&["GEOPOS", "nokey", "a"]),
            cmd(&["GEOHASH", "Sicily", "Palermo", "Catania", "Marsala", "missing"]),
            cmd(&["GEOHASH", "poles", "sw", "ne", "null"]),
            cmd(&["GEOHASH", "nokey", "a", "b"]),
            cmd(&["GEODIST", "Sicily", "Palermo", "Catania"]),
            cmd(&["GEODIST", "Sicily", "Palermo", "Catania", "km"]),
            cmd(&["GEODIST", "Sicily", "Palermo", "Catania", "MI"]),
            cmd(&["GEODIST", "Sicily", "Palermo", "Catania", "ft"]),
            cmd(&["GEODIST", "Sicily", "Palermo", "Palermo"]),
            cmd(&["GEODIST", "poles", "sw", "ne"]),
            cmd(&["GEODIST", "Sicily", "Palermo", "missing"]),
            cmd(&["GEODIST", "nokey", "a", "b"]),
            cmd(&["ZADD", "Sicily", "-5", "weird", "1e17", "huge"]),
            cmd(&["GEOPOS", "Sicily", "weird", "huge"]),
            cmd(&["GEOHASH", "Sicily", "weird", "huge"]),
            cmd(&["SET", "str", "x"]),
        ],
    );
    for bad in [
        &["GEOADD", "Sicily", "181", "0", "x"][..],
        &["GEOADD", "Sicily", "0", "86", "x"],
        &["GEOADD", "Sicily", "abc", "0", "x"],
        &["GEOADD", "Sicily", "0", "0"],
        &["GEOADD", "Sicily", "NX", "XX", "0", "0", "x"],
        &["GEOADD", "Sicily", "GT", "0", "0", "x"],
        &["GEOADD", "str", "0", "0", "x"],
        &["GEODIST", "Sicily", "Palermo", "Catania", "parsec"],
        &["GEODIST", "Sicily", "Palermo", "Catania", "km", "extra"],
        &["GEODIST", "str", "a", "b"],
        &["GEOPOS", "str", "a"],
        &["GEOHASH", "str", "a"],
    ] {
        d.check_error(bad);
    }
    // RESP3: coordinates are doubles (HELLO's reply differs in the client id).
    d.both(&["HELLO", "3"]);
    d.check(&["GEOPOS", "Sicily", "Palermo", "missing"]);
}

#[test]
fn searches_match_redis() {
    let mut d = Diff::new();
    let mut rng = Rng(0x9E3779B97F4A7C15);
    // Places spread over the world, and a dense cluster around one city.
    let mut add = vec!["GEOADD".to_string(), "places".to_string()];
    for i in 0..400 {
        let (lon, lat) = if i % 2 == 0 {
            (rng.range(-180.0, 180.0), rng.range(-85.0, 85.0))
        } else {
            (rng.range(2.2, 2.5), rng.range(48.75, 48.95))
        };
        add.extend([format!("{lon:.6}"), format!("{lat:.6}"), format!("p{i}")]);
    }
    check_all(&mut d, &[add]);
    let units = ["m", "km", "mi", "ft"];
    let mut queries = Vec::new();
    for q in 0..300 {
        let unit = units[q % 4];
        let scale = match unit {
            "m" => 1.0,
            "km" => 1000.0,
            "mi" => 1609.34,
            _ => 0.3048,
        };
        // Radii from a few meters to most of the globe.
        let meters = 10f64.powf(rng.range(0.5, 7.3));
        let r = format!("{:.3}", meters / scale);
        let (lon, lat) = if q % 3 == 0 {
            (rng.range(2.2, 2.5), rng.range(48.75, 48.95))
        } else {
            (rng.range(-180.0, 180.0), rng.range(-85.0, 85.0))
        };
        let (lon, lat) = (format!("{lon:.5}"), format!("{lat:.5}"));
        let member = format!("p{}", (q * 7) % 400);
        let tail: Vec<&str> = match q % 6 {
            0 => vec![],
            1 => vec!["WITHDIST", "ASC"],
            2 => vec!["WITHCOORD", "WITHHASH", "DESC"],
            3 => vec!["COUNT", "5"],
            4 => vec!["COUNT", "3", "ANY"],
            _ => vec!["WITHDIST", "COUNT", "7", "DESC"],
        };
        let mut with = |base: Vec<String>| {
            let mut v = base;
            v.extend(tail.iter().map(|s| s.to_string()));
            queries.push(v);
        };
        with(cmd(&["GEORADIUS", "places", &lon, &lat, &r, unit]));
        with(cmd(&["GEORADIUSBYMEMBER_RO", "places", &member, &r, unit]));
        with(cmd(&[
            "GEOSEARCH",
            "places",
            "FROMLONLAT",
            &lon,
            &lat,
            "BYRADIUS",
            &r,
            unit,
        ]));
        let h = format!("{:.3}", meters * rng.range(0.5, 3.0) / scale);
        with(cmd(&[
            "GEOSEARCH",
            "places",
            "FROMMEMBER",
            &member,
            "BYBOX",
            &r,
            &h,
            unit,
        ]));
    }
    check_all(&mut d, &queries);
    // Storing: the result set, by hash or by distance; an empty result
    // deletes the destination.
    check_all(
        &mut d,
        &[
            cmd(&["GEORADIUS", "places", "2.35", "48.85", "5", "km", "STORE", "near"]),
            cmd(&["ZRANGE", "near", "0", "-1", "WITHSCORES"]),
            cmd(&[
                "GEORADIUS",
                "places",
                "2.35",
                "48.85",
                "5",
                "km",
                "STOREDIST",
                "near",
                "COUNT",
                "4",
            ]),
            cmd(&["ZRANGE", "near", "0", "-1", "WITHSCORES"]),
            cmd(&[
                "GEOSEARCHSTORE",
                "box",
                "places",
                "FROMLONLAT",
                "2.35",
                "48.85",
                "BYBOX",
                "8",
                "6",
                "km",
                "STOREDIST",
            ]),
            cmd(&["ZRANGE", "box", "0", "-1", "WITHSCORES"]),
            cmd(&[
                "GEOSEARCHSTORE",
                "box",
                "places",
                "FROMLONLAT",
                "0",
                "0",
                "BYRADIUS",
                "1",
                "m",
            ]),
            cmd(&["EXISTS", "box"]),
            cmd(&[
                "GEOSEARCHSTORE",
                "box",
                "nokey",
                "FROMLONLAT",
                "0",
                "0",
                "BYRADIUS",
                "1",
                "m",
            ]),
            cmd(&["GEORADIUSBYMEMBER", "nokey", "x", "1", "m", "STORE", "near"]),
            cmd(&["EXISTS", "near"]),
            cmd(&["GEOSEARCH", "nokey", "FROMMEMBER", "x", "BYRADIUS", "1", "m"]),
            cmd(&["GEORADIUS", "places", "2.35", "48.85", "0", "km"]),
        ],
    );
    for bad in [
        &["GEORADIUS", "places", "2", "48", "-1", "km"][..],
        &["GEORADIUS", "places", "2", "48", "x", "km"],
        &["GEORADIUS", "places", "2", "48", "1", "parsec"],
        &["GEORADIUS", "places", "2", "148", "1", "km"],
        &["GEORADIUS", "places", "2", "48", "1", "km", "COUNT", "0"],
        &["GEORADIUS", "places", "2", "48", "1", "km", "ANY"],
        &["GEORADIUS", "places", "2", "48", "1", "km", "STORE", "x", "WITHDIST"],
        &["GEORADIUS_RO", "places", "2", "48", "1", "km", "STORE", "x"],
        &["GEORADIUSBYMEMBER", "places", "nobody", "1", "km"],
        &["GEOSEARCH", "places", "BYRADIUS", "1", "km"],
        &["GEOSEARCH", "places", "FROMLONLAT", "1", "1"],
        &[
            "GEOSEARCH",
            "places",
            "FROMLONLAT",
            "1",
            "1",
            "FROMMEMBER",
            "p1",
            "BYRADIUS",
            "1",
            "km",
        ],
        &[
            "GEOSEARCH",
            "places",
            "FROMLONLAT",
            "1",
            "1",
            "BYRADIUS",
            "1",
            "km",
            "BYBOX",
            "1",
            "1",
            "km",
        ],
        &["GEOSEARCH", "places", "FROMLONLAT", "1", "1", "BYBOX", "-1", "1", "km"],
        &["GEOSEARCH", "places", "FROMLONLAT", "1", "1", "BYBOX", "w", "1", "km"],
        &[
            "GEOSEARCH",
            "places",
            "FROMLONLAT",
            "1",
            "1",
            "BYRADIUS",
            "1",
            "km",
            "STORE",
            "x",
        ],
        &[
            "GEOSEARCHSTORE",
            "x",
            "places",
            "FROMLONLAT",
            "1",
            "1",
            "BYRADIUS",
            "1",
            "km",
            "WITHCOORD",
        ],
        &["GEOSEARCH", "places", "FROMMEMBER", "nobody", "BYRADIUS", "1", "km"],
    ] {
        d.check_error(bad);
    }
    d.check(&[
        "COMMAND",
        "GETKEYS",
        "GEORADIUS",
        "k",
        "0",
        "0",
        "1",
        "m",
        "STORE",
        "a",
        "STOREDIST",
        "b",
    ]);
}
