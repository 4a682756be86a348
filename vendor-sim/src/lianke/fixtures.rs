//! Canned Lianke data, taken from the example replies in `lianke-v3.readable.txt`.

use serde_json::{Value, json};

/// Models known to `printer_enum` (the doc's list plus its search example's results).
pub(crate) const PRINTER_MODELS: &[&str] = &[
    "DASCOM DS-660",
    "XP-80",
    "QR-588 LABEL",
    "Microsoft XPS Document Writer",
    "KM-300S",
    "KM-218",
    "KM-118",
    "KM-100",
    "HP LaserJet P1007",
    "EPSON L310 Series",
    "Deli DL-730K",
    "Canon MP280 series Printer",
    "Brother MFC-7880DN Printer",
    "Kyocera MA2000w GX",
    "ESC/POS通用驱动(203dpi) 模式2",
    "TOSHIBA e-STUDIO2323AMSeries GDI",
    "HP LaserJet 1020",
    "HP Laser NS 1020 PCLmS",
    "HP LaserJet Professional CP1020 Series",
    "Canon iR1020/1024/1025 UFRII LT",
    "JIAPUWEI JPW1020",
    "Kyocera Mita FS-1020D KX",
    "Biaotop TP-1020",
    "TEJIEYIDE TJYD1020",
    "Kyocera FS-1020MFP GX",
];

/// `printer_params` data for a model: the doc's HP LaserJet P1007 example, renamed.
pub(crate) fn printer_params(model: &str, color: bool) -> Value {
    let colors = if color {
        json!({"黑白": 1, "彩色": 2})
    } else {
        json!({"黑白": 1})
    };
    let mut device_name: Vec<u8> = model.bytes().take(31).collect();
    device_name.resize(32, 0);
    json!({
        "Capabilities": {
            "Bins": {"在纸盘 1 中手动进纸": 4, "纸盘 1": 1, "自动选择": 7},
            "Color": colors,
            "Copies": 999,
            "Duplex": {"关闭": 1, "短边": 3, "长边": 2},
            "MediaTypes": {"默认": 0},
            "Orientation": {"横向": 2, "竖向": 1},
            "Papers": {
                "10 号信封": 20, "16 开 184x260 毫米": 263, "16 开 195x270 毫米": 264,
                "16 开 197x273 毫米": 265, "8.5x13（自定义）": 258, "A4": 9, "A5": 11, "A6": 70,
                "B5 (JIS)": 13, "B5 信封": 34, "C5 信封": 28, "DL 信封": 27,
                "Double Japan Postcard Rotated": 82, "Executive": 7, "Japanese Postcard": 43,
                "Legal": 5, "Letter": 1, "Monarch 信封": 37,
                "标签纸（80x200mm）": 528, "标签纸（80x100mm）": 529
            },
            "Resolutions": null
        },
        "DevMode": {
            "BitsPerPel": 0, "Collate": 0, "Color": 1, "Copies": 1, "DefaultSource": 7,
            "DeviceName": device_name, "DisplayFlags": 0, "DisplayFrequency": 0,
            "DitherType": 0, "DriverExtra": 821, "DriverVersion": 3, "Duplex": 1,
            "Fields": 40719, "FormName": vec![0u8; 32], "ICMIntent": 0, "ICMMethod": 0,
            "LogPixels": 0, "MediaType": 0, "Orientation": 1, "PanningHeight": 0,
            "PanningWidth": 0, "PaperLength": 2970, "PaperSize": 9, "PaperWidth": 2100,
            "PelsHeight": 0, "PelsWidth": 0, "PrintQuality": 600, "Reserved1": 0,
            "Reserved2": 0, "Scale": 0, "Size": 220, "SpecVersion": 1025, "TTOption": 0,
            "YResolution": 0
        },
        "DeviceContext": {
            "BitsPixel": 8, "HorzRes": 4736, "HorzSize": 200, "LogPixelsX": 600,
            "LogPixelsY": 600, "NumColors": 256, "PhysicalHeight": 7016,
            "PhysicalOffsetX": 94, "PhysicalOffsetY": 94, "PhysicalWidth": 4961,
            "VertRes": 6824, "VertSize": 289
        },
        "Name": model
    })
}

/// `paper_dimension_list` data (the doc's example; units 0.1 mm).
pub(crate) fn paper_dimensions() -> Value {
    let rows: &[(&str, u32, u32, u32, u32, u32)] = &[
        ("16K", 257, 2730, 1968, 2650, 1840),
        ("8.5x13", 258, 3302, 2159, 3220, 2060),
        ("明信片", 260, 1480, 1000, 1400, 870),
        ("双面明信片", 261, 2000, 1480, 1920, 1350),
        ("A6", 262, 1480, 1050, 1400, 920),
        ("B5 (ISO)", 259, 2500, 1760, 2420, 1680),
        ("B5 (JIS)", 13, 2570, 1820, 2490, 1730),
        ("Monarch 信封", 37, 1905, 983, 1820, 870),
        ("B5 信封", 34, 2500, 1760, 2420, 1680),
        ("C5 信封", 28, 2290, 1620, 2210, 1520),
        ("DL 信封", 27, 2200, 1100, 2120, 980),
        ("10 号信封", 20, 2413, 1046, 2330, 920),
        ("A5", 11, 2100, 1480, 2020, 1350),
        ("A4", 9, 2970, 2100, 2890, 2000),
        ("Executive", 7, 2667, 1842, 2580, 1730),
        ("Legal", 5, 3556, 2159, 3470, 2060),
        ("Letter", 1, 2794, 2159, 2710, 2060),
    ];
    let mut map = serde_json::Map::new();
    for (name, id, ph, pw, h, w) in rows {
        map.insert(
            (*name).to_owned(),
            json!({
                "paper_id": id,
                "physical_height": ph,
                "physical_width": pw,
                "printable_height": h,
                "printable_width": w
            }),
        );
    }
    Value::Object(map)
}
