//! A JFIF decoder for the frost textures: baseline and progressive Huffman JPEG, three
//! components, 4:4:4 or 4:2:0, decoded with libjpeg's ISLOW IDCT, fancy up-sampling and colour
//! conversion so the pixels equal `cv2.imread` (OpenCV's bundled libjpeg-turbo).
//!
//! Progressive files are decoded fully before the IDCT, as libjpeg does outside buffered-image
//! mode; libjpeg's block smoothing only acts on coefficients that the file never completes, so a
//! file whose scans refine every coefficient (all six textures do) decodes without it — a file
//! that leaves coefficients 1..9 unrefined is refused rather than decoded differently.

use super::{Coefficients, Plane, Subsampling, ZIGZAG_TO_NATURAL, planes_to_rgb};

/// Why a JPEG could not be decoded.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct JpegError(pub String);

impl std::fmt::Display for JpegError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(&self.0)
    }
}

fn err<T>(message: impl Into<String>) -> Result<T, JpegError> {
    Err(JpegError(message.into()))
}

#[derive(Clone, Default)]
struct Huffman {
    /// (code length, code) → symbol, as canonical tables: for each length the first code, the
    /// count, and the index of its first symbol.
    maxcode: [i32; 18],
    valptr: [i32; 17],
    mincode: [i32; 17],
    values: Vec<u8>,
}

impl Huffman {
    fn new(counts: &[u8; 16], values: Vec<u8>) -> Self {
        let mut table = Huffman {
            maxcode: [-1; 18],
            valptr: [0; 17],
            mincode: [0; 17],
            values,
        };
        let mut code = 0i32;
        let mut index = 0i32;
        for length in 1..=16 {
            let count = counts[length - 1] as i32;
            if count > 0 {
                table.valptr[length] = index;
                table.mincode[length] = code;
                code += count;
                index += count;
                table.maxcode[length] = code - 1;
            }
            code <<= 1;
        }
        table.maxcode[17] = i32::MAX;
        table
    }
}

struct Component {
    id: u8,
    h: usize,
    v: usize,
    quant_index: usize,
    blocks_wide: usize,
    blocks_high: usize,
    /// Blocks allocated (whole MCUs).
    alloc_wide: usize,
    alloc_high: usize,
    blocks: Vec<[i16; 64]>,
    dc_table: usize,
    ac_table: usize,
    dc_pred: i32,
    /// The precision of each coefficient after the scans so far (`coef_bits`): −1 unseen.
    coef_bits: [i32; 64],
}

struct BitReader<'a> {
    data: &'a [u8],
    pos: usize,
    buffer: u64,
    bits: u32,
    /// A marker was reached: further reads return zeros (libjpeg's behaviour too).
    hit_marker: bool,
}

impl<'a> BitReader<'a> {
    fn new(data: &'a [u8], pos: usize) -> Self {
        Self {
            data,
            pos,
            buffer: 0,
            bits: 0,
            hit_marker: false,
        }
    }

    fn fill(&mut self) {
        while self.bits <= 56 {
            let byte = if self.hit_marker || self.pos >= self.data.len() {
                0
            } else {
                let b = self.data[self.pos];
                if b == 0xFF {
                    let next = self.data.get(self.pos + 1).copied().unwrap_or(0);
                    if next == 0x00 {
                        self.pos += 2;
                        0xFF
                    } else {
                        self.hit_marker = true;
                        0
                    }
                } else {
                    self.pos += 1;
                    b
                }
            };
            self.buffer |= (byte as u64) << (56 - self.bits);
            self.bits += 8;
        }
    }

    fn bits(&mut self, n: u32) -> u32 {
        if n == 0 {
            return 0;
        }
        if self.bits < n {
            self.fill();
        }
        let value = (self.buffer >> (64 - n)) as u32;
        self.buffer <<= n;
        self.bits -= n;
        value
    }

    fn bit(&mut self) -> u32 {
        self.bits(1)
    }

    fn decode(&mut self, table: &Huffman) -> Result<u8, JpegError> {
        let mut code = 0i32;
        for length in 1..=16 {
            code = (code << 1) | self.bit() as i32;
            if code <= table.maxcode[length] {
                let index = table.valptr[length] + code - table.mincode[length];
                return table
                    .values
                    .get(index as usize)
                    .copied()
                    .ok_or_else(|| JpegError("corrupt Huffman code".into()));
            }
        }
        err("corrupt Huffman code")
    }

    /// `HUFF_EXTEND`: the signed value of an `s`-bit magnitude category.
    fn receive_extend(&mut self, s: u32) -> i32 {
        if s == 0 {
            return 0;
        }
        let v = self.bits(s) as i32;
        if v < (1 << (s - 1)) {
            v - (1 << s) + 1
        } else {
            v
        }
    }

    /// Skips to the byte after the next RSTn marker and resets the bit buffer.
    fn restart(&mut self) -> Result<(), JpegError> {
        self.buffer = 0;
        self.bits = 0;
        self.hit_marker = false;
        while self.pos + 1 < self.data.len() {
            if self.data[self.pos] == 0xFF && (0xD0..=0xD7).contains(&self.data[self.pos + 1]) {
                self.pos += 2;
                return Ok(());
            }
            self.pos += 1;
        }
        err("missing restart marker")
    }

    /// The position of the marker that ends the entropy-coded segment.
    fn end(&self) -> usize {
        let mut pos = self.pos;
        while pos + 1 < self.data.len() {
            if self.data[pos] == 0xFF
                && self.data[pos + 1] != 0
                && !(0xD0..=0xD7).contains(&self.data[pos + 1])
            {
                return pos;
            }
            pos += 1;
        }
        self.data.len()
    }
}

struct Scan {
    components: Vec<usize>,
    ss: usize,
    se: usize,
    ah: u32,
    al: u32,
}

/// Decodes a JPEG file to interleaved RGB: `(height, width, pixels)`.
pub(crate) fn decode_rgb(data: &[u8]) -> Result<(usize, usize, Vec<u8>), JpegError> {
    if data.len() < 4 || data[0] != 0xFF || data[1] != 0xD8 {
        return err("not a JPEG file (no SOI marker)");
    }
    let mut pos = 2;
    let mut quant = [[0u16; 64]; 4];
    let mut dc_tables: [Huffman; 4] = Default::default();
    let mut ac_tables: [Huffman; 4] = Default::default();
    let mut components: Vec<Component> = Vec::new();
    let (mut width, mut height) = (0usize, 0usize);
    let mut progressive = false;
    let mut restart_interval = 0usize;
    let mut eob_run = 0u32;
    loop {
        while pos < data.len() && data[pos] != 0xFF {
            pos += 1;
        }
        while pos < data.len() && data[pos] == 0xFF {
            pos += 1;
        }
        if pos >= data.len() {
            return err("unexpected end of file");
        }
        let marker = data[pos];
        pos += 1;
        if marker == 0xD9 {
            break;
        }
        if (0xD0..=0xD7).contains(&marker) || marker == 0x01 {
            continue;
        }
        if pos + 2 > data.len() {
            return err("truncated marker segment");
        }
        let length = u16::from_be_bytes([data[pos], data[pos + 1]]) as usize;
        if length < 2 || pos + length > data.len() {
            return err("truncated marker segment");
        }
        let segment = &data[pos + 2..pos + length];
        match marker {
            0xDB => {
                let mut s = segment;
                while !s.is_empty() {
                    let precision = s[0] >> 4;
                    let index = (s[0] & 15) as usize;
                    let size = if precision == 0 { 64 } else { 128 };
                    if index > 3 || s.len() < 1 + size {
                        return err("bad quantisation table");
                    }
                    for k in 0..64 {
                        quant[index][ZIGZAG_TO_NATURAL[k]] = if precision == 0 {
                            s[1 + k] as u16
                        } else {
                            u16::from_be_bytes([s[1 + 2 * k], s[2 + 2 * k]])
                        };
                    }
                    s = &s[1 + size..];
                }
            }
            0xC4 => {
                let mut s = segment;
                while s.len() >= 17 {
                    let class = s[0] >> 4;
                    let index = (s[0] & 15) as usize;
                    let counts: [u8; 16] = s[1..17].try_into().expect("16 bytes");
                    let total: usize = counts.iter().map(|&c| c as usize).sum();
                    if index > 3 || s.len() < 17 + total {
                        return err("bad Huffman table");
                    }
                    let table = Huffman::new(&counts, s[17..17 + total].to_vec());
                    if class == 0 {
                        dc_tables[index] = table;
                    } else {
                        ac_tables[index] = table;
                    }
                    s = &s[17 + total..];
                }
            }
            0xDD => {
                if segment.len() < 2 {
                    return err("bad DRI segment");
                }
                restart_interval = u16::from_be_bytes([segment[0], segment[1]]) as usize;
            }
            0xC0..=0xC2 => {
                progressive = marker == 0xC2;
                if segment.len() < 6 || segment[0] != 8 {
                    return err("only 8-bit JPEG is supported");
                }
                height = u16::from_be_bytes([segment[1], segment[2]]) as usize;
                width = u16::from_be_bytes([segment[3], segment[4]]) as usize;
                let count = segment[5] as usize;
                if count != 3 || segment.len() < 6 + 3 * count || width == 0 || height == 0 {
                    return err("only three-component JPEG with a known size is supported");
                }
                for c in 0..count {
                    let s = &segment[6 + 3 * c..9 + 3 * c];
                    components.push(Component {
                        id: s[0],
                        h: (s[1] >> 4) as usize,
                        v: (s[1] & 15) as usize,
                        quant_index: (s[2] & 3) as usize,
                        blocks_wide: 0,
                        blocks_high: 0,
                        alloc_wide: 0,
                        alloc_high: 0,
                        blocks: Vec::new(),
                        dc_table: 0,
                        ac_table: 0,
                        dc_pred: 0,
                        coef_bits: [-1; 64],
                    });
                }
                let max_h = components.iter().map(|c| c.h).max().unwrap_or(1);
                let max_v = components.iter().map(|c| c.v).max().unwrap_or(1);
                if max_h == 0 || max_v == 0 || max_h > 2 || max_v > 2 {
                    return err("unsupported sampling factors");
                }
                let mcus_wide = width.div_ceil(8 * max_h);
                let mcus_high = height.div_ceil(8 * max_v);
                for c in &mut components {
                    if c.h == 0 || c.v == 0 {
                        return err("unsupported sampling factors");
                    }
                    c.blocks_wide = (width * c.h).div_ceil(8 * max_h);
                    c.blocks_high = (height * c.v).div_ceil(8 * max_v);
                    c.alloc_wide = mcus_wide * c.h;
                    c.alloc_high = mcus_high * c.v;
                    c.blocks = vec![[0i16; 64]; c.alloc_wide * c.alloc_high];
                }
            }
            0xC3 | 0xC5..=0xC7 | 0xC9..=0xCB | 0xCD..=0xCF => {
                return err("lossless, hierarchical and arithmetic-coded JPEG are not supported");
            }
            0xDA => {
                if components.is_empty() {
                    return err("scan before frame header");
                }
                let count = segment.first().copied().unwrap_or(0) as usize;
                if segment.len() < 1 + 2 * count + 3 || count == 0 {
                    return err("bad scan header");
                }
                let mut scan = Scan {
                    components: Vec::new(),
                    ss: segment[1 + 2 * count] as usize,
                    se: segment[2 + 2 * count] as usize,
                    ah: (segment[3 + 2 * count] >> 4) as u32,
                    al: (segment[3 + 2 * count] & 15) as u32,
                };
                for i in 0..count {
                    let id = segment[1 + 2 * i];
                    let tables = segment[2 + 2 * i];
                    let index = components
                        .iter()
                        .position(|c| c.id == id)
                        .ok_or_else(|| JpegError("scan names an unknown component".into()))?;
                    components[index].dc_table = (tables >> 4) as usize & 3;
                    components[index].ac_table = (tables & 15) as usize & 3;
                    scan.components.push(index);
                }
                if !progressive {
                    scan.ss = 0;
                    scan.se = 63;
                    scan.ah = 0;
                    scan.al = 0;
                }
                if scan.se > 63 || scan.ss > scan.se {
                    return err("bad spectral selection");
                }
                let mut reader = BitReader::new(data, pos + length);
                decode_scan(
                    &mut reader,
                    &mut components,
                    &scan,
                    &dc_tables,
                    &ac_tables,
                    progressive,
                    restart_interval,
                    &mut eob_run,
                )?;
                pos = reader.end();
                continue;
            }
            _ => {}
        }
        pos += length;
    }
    if components.len() != 3 {
        return err("no frame header");
    }
    let subsampling = match components.iter().map(|c| (c.h, c.v)).collect::<Vec<_>>()[..] {
        [(1, 1), (1, 1), (1, 1)] => Subsampling::None,
        [(2, 2), (1, 1), (1, 1)] => Subsampling::Half,
        _ => return err("only 4:4:4 and 4:2:0 JPEG are supported"),
    };
    if progressive {
        for c in &components {
            if c.coef_bits[..10].iter().any(|&bits| bits != 0) {
                return err(
                    "progressive JPEG with unrefined coefficients (libjpeg would smooth them)",
                );
            }
        }
    }
    let max_h = components[0].h;
    let max_v = components[0].v;
    let planes: Vec<Plane> = components
        .iter()
        .map(|c| {
            // Only the component's own blocks carry data the output can reach.
            let mut blocks = Vec::with_capacity(c.blocks_wide * c.blocks_high);
            for by in 0..c.blocks_high {
                blocks.extend_from_slice(
                    &c.blocks[by * c.alloc_wide..by * c.alloc_wide + c.blocks_wide],
                );
            }
            Coefficients {
                blocks_wide: c.blocks_wide,
                blocks_high: c.blocks_high,
                blocks,
                quant: quant[c.quant_index],
                width: (width * c.h).div_ceil(max_h),
                height: (height * c.v).div_ceil(max_v),
            }
            .to_plane()
        })
        .collect();
    let planes: [Plane; 3] = planes
        .try_into()
        .map_err(|_| JpegError("components".into()))?;
    Ok((
        height,
        width,
        planes_to_rgb(&planes, subsampling, height, width),
    ))
}

#[allow(clippy::too_many_arguments)]
fn decode_scan(
    reader: &mut BitReader<'_>,
    components: &mut [Component],
    scan: &Scan,
    dc_tables: &[Huffman; 4],
    ac_tables: &[Huffman; 4],
    progressive: bool,
    restart_interval: usize,
    eob_run: &mut u32,
) -> Result<(), JpegError> {
    for &c in &scan.components {
        components[c].dc_pred = 0;
        for k in scan.ss..=scan.se {
            components[c].coef_bits[k] = scan.al as i32;
        }
    }
    *eob_run = 0;
    // (component, block index) in decoding order for each MCU.
    let units: Vec<Vec<(usize, usize)>> = if scan.components.len() == 1 {
        let c = &components[scan.components[0]];
        (0..c.blocks_high)
            .flat_map(|by| (0..c.blocks_wide).map(move |bx| vec![(0, by * c.alloc_wide + bx)]))
            .collect()
    } else {
        // Every component is allocated in whole MCUs: its allocation over its sampling factor
        // is the MCU count.
        let mcus_wide = components[0].alloc_wide / components[0].h;
        let mcus_high = components[0].alloc_high / components[0].v;
        let mut units = Vec::with_capacity(mcus_wide * mcus_high);
        for my in 0..mcus_high {
            for mx in 0..mcus_wide {
                let mut mcu = Vec::new();
                for (slot, &ci) in scan.components.iter().enumerate() {
                    let c = &components[ci];
                    for v in 0..c.v {
                        for h in 0..c.h {
                            let (bx, by) = (mx * c.h + h, my * c.v + v);
                            mcu.push((slot, by * c.alloc_wide + bx));
                        }
                    }
                }
                units.push(mcu);
            }
        }
        units
    };
    for (index, mcu) in units.iter().enumerate() {
        if restart_interval > 0 && index > 0 && index % restart_interval == 0 {
            reader.restart()?;
            for &c in &scan.components {
                components[c].dc_pred = 0;
            }
            *eob_run = 0;
        }
        for &(slot, block) in mcu {
            let ci = scan.components[slot];
            let component = &mut components[ci];
            let dc_table = &dc_tables[component.dc_table];
            let ac_table = &ac_tables[component.ac_table];
            let coefficients = &mut component.blocks[block];
            if !progressive {
                let s = reader.decode(dc_table)? as u32;
                component.dc_pred += reader.receive_extend(s);
                coefficients[0] = component.dc_pred as i16;
                let mut k = 1;
                while k < 64 {
                    let rs = reader.decode(ac_table)?;
                    let (r, s) = ((rs >> 4) as usize, (rs & 15) as u32);
                    if s == 0 {
                        if r != 15 {
                            break;
                        }
                        k += 16;
                        continue;
                    }
                    k += r;
                    if k > 63 {
                        return err("corrupt AC coefficients");
                    }
                    coefficients[ZIGZAG_TO_NATURAL[k]] = reader.receive_extend(s) as i16;
                    k += 1;
                }
            } else if scan.ss == 0 {
                if scan.ah == 0 {
                    let s = reader.decode(dc_table)? as u32;
                    component.dc_pred += reader.receive_extend(s);
                    coefficients[0] = (component.dc_pred << scan.al) as i16;
                } else if reader.bit() == 1 {
                    coefficients[0] |= (1 << scan.al) as i16;
                }
            } else if scan.ah == 0 {
                decode_ac_first(reader, coefficients, ac_table, scan, eob_run)?;
            } else {
                decode_ac_refine(reader, coefficients, ac_table, scan, eob_run)?;
            }
        }
    }
    Ok(())
}

fn decode_ac_first(
    reader: &mut BitReader<'_>,
    coefficients: &mut [i16; 64],
    table: &Huffman,
    scan: &Scan,
    eob_run: &mut u32,
) -> Result<(), JpegError> {
    if *eob_run > 0 {
        *eob_run -= 1;
        return Ok(());
    }
    let mut k = scan.ss;
    while k <= scan.se {
        let rs = reader.decode(table)?;
        let (r, s) = ((rs >> 4) as u32, (rs & 15) as u32);
        if s != 0 {
            k += r as usize;
            if k > 63 {
                return err("corrupt AC coefficients");
            }
            coefficients[ZIGZAG_TO_NATURAL[k]] = (reader.receive_extend(s) << scan.al) as i16;
        } else if r == 15 {
            k += 15;
        } else {
            *eob_run = (1 << r) - 1;
            if r > 0 {
                *eob_run += reader.bits(r);
            }
            break;
        }
        k += 1;
    }
    Ok(())
}

fn decode_ac_refine(
    reader: &mut BitReader<'_>,
    coefficients: &mut [i16; 64],
    table: &Huffman,
    scan: &Scan,
    eob_run: &mut u32,
) -> Result<(), JpegError> {
    let p1 = 1i16 << scan.al;
    let m1 = (-1i16) << scan.al;
    let mut k = scan.ss;
    let refine = |reader: &mut BitReader<'_>, coefficient: &mut i16| {
        if reader.bit() == 1 && (*coefficient & p1) == 0 {
            *coefficient += if *coefficient >= 0 { p1 } else { m1 };
        }
    };
    if *eob_run == 0 {
        while k <= scan.se {
            let rs = reader.decode(table)?;
            let (mut r, s) = ((rs >> 4) as i32, (rs & 15) as u32);
            let mut value = 0i16;
            if s != 0 {
                value = if reader.bit() == 1 { p1 } else { m1 };
            } else if r != 15 {
                *eob_run = 1 << r;
                if r > 0 {
                    *eob_run += reader.bits(r as u32);
                }
                break;
            }
            while k <= scan.se {
                let coefficient = &mut coefficients[ZIGZAG_TO_NATURAL[k]];
                if *coefficient != 0 {
                    refine(reader, coefficient);
                } else {
                    r -= 1;
                    if r < 0 {
                        break;
                    }
                }
                k += 1;
            }
            if value != 0 && k <= 63 {
                coefficients[ZIGZAG_TO_NATURAL[k]] = value;
            }
            k += 1;
        }
    }
    if *eob_run > 0 {
        while k <= scan.se {
            let coefficient = &mut coefficients[ZIGZAG_TO_NATURAL[k]];
            if *coefficient != 0 {
                refine(reader, coefficient);
            }
            k += 1;
        }
        *eob_run -= 1;
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn non_jpeg_input_is_an_error() {
        assert!(decode_rgb(b"\x89PNG....").is_err());
        assert!(decode_rgb(&[0xFF, 0xD8, 0xFF]).is_err());
    }
}
