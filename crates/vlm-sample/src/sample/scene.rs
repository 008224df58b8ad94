//! What a synthetic image shows (1-3 flat shapes on a plain or gradient background) and how
//! it is drawn.

use vlm_image::RgbImage;
use vlm_rng::SplitMix64;

/// A shape's fill color.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum Color {
    /// `(220, 40, 40)`
    Red,
    /// `(40, 170, 60)`
    Green,
    /// `(40, 80, 220)`
    Blue,
    /// `(235, 200, 30)`
    Yellow,
}

impl Color {
    /// Every color, in a fixed order.
    pub const ALL: [Self; 4] = [Self::Red, Self::Green, Self::Blue, Self::Yellow];

    /// The exact fill (shapes are drawn without anti-aliasing, so every pixel inside a shape
    /// has this value).
    pub fn rgb(self) -> [u8; 3] {
        match self {
            Self::Red => [220, 40, 40],
            Self::Green => [40, 170, 60],
            Self::Blue => [40, 80, 220],
            Self::Yellow => [235, 200, 30],
        }
    }

    /// The English word, lowercase (`"red"`).
    pub fn english(self) -> &'static str {
        match self {
            Self::Red => "red",
            Self::Green => "green",
            Self::Blue => "blue",
            Self::Yellow => "yellow",
        }
    }

    /// The Chinese word (`"红色"`).
    pub fn chinese(self) -> &'static str {
        match self {
            Self::Red => "红色",
            Self::Green => "绿色",
            Self::Blue => "蓝色",
            Self::Yellow => "黄色",
        }
    }
}

/// A shape's outline.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum ShapeKind {
    /// A disc of radius `r`.
    Circle,
    /// An axis-aligned square of half side `r * 4 / 5`.
    Square,
    /// An upright isosceles triangle: apex `r` above the center, base `r` below, `2r` wide.
    Triangle,
}

impl ShapeKind {
    /// Every shape, in a fixed order.
    pub const ALL: [Self; 3] = [Self::Circle, Self::Square, Self::Triangle];

    /// The English word, lowercase (`"circle"`).
    pub fn english(self) -> &'static str {
        match self {
            Self::Circle => "circle",
            Self::Square => "square",
            Self::Triangle => "triangle",
        }
    }

    /// The Chinese word (`"圆形"`).
    pub fn chinese(self) -> &'static str {
        match self {
            Self::Circle => "圆形",
            Self::Square => "正方形",
            Self::Triangle => "三角形",
        }
    }

    /// Whether the offset `(dx, dy)` from the shape's center is inside a shape of size `r`.
    fn contains(self, dx: i64, dy: i64, r: i64) -> bool {
        match self {
            Self::Circle => dx * dx + dy * dy <= r * r,
            Self::Square => dx.abs() * 5 <= r * 4 && dy.abs() * 5 <= r * 4,
            // Half width grows from 0 at the apex (dy = -r) to r at the base (dy = r).
            Self::Triangle => (-r..=r).contains(&dy) && dx.abs() * 2 <= dy + r,
        }
    }
}

/// Where a shape sits: the center of a cell of a plus-shaped layout.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum Position {
    /// Centre at `(0.5, 0.2)` of the image's width and height.
    Top,
    /// `(0.2, 0.5)`
    Left,
    /// `(0.5, 0.5)`
    Center,
    /// `(0.8, 0.5)`
    Right,
    /// `(0.5, 0.8)`
    Bottom,
}

impl Position {
    /// Every position, in reading order (top, left, center, right, bottom).
    pub const ALL: [Self; 5] = [
        Self::Top,
        Self::Left,
        Self::Center,
        Self::Right,
        Self::Bottom,
    ];

    /// The pixel `(x, y)` at the center of this position in a `size` x `size` image.
    pub fn center(self, size: u32) -> (u32, u32) {
        let (fx, fy) = match self {
            Self::Top => (5, 2),
            Self::Left => (2, 5),
            Self::Center => (5, 5),
            Self::Right => (8, 5),
            Self::Bottom => (5, 8),
        };
        (size * fx / 10, size * fy / 10)
    }

    /// The English word, lowercase (`"left"`).
    pub fn english(self) -> &'static str {
        match self {
            Self::Top => "top",
            Self::Left => "left",
            Self::Center => "center",
            Self::Right => "right",
            Self::Bottom => "bottom",
        }
    }

    /// The Chinese word (`"左边"`).
    pub fn chinese(self) -> &'static str {
        match self {
            Self::Top => "上边",
            Self::Left => "左边",
            Self::Center => "中间",
            Self::Right => "右边",
            Self::Bottom => "下边",
        }
    }
}

/// One drawn shape.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct Shape {
    /// Where it is (its cell; no two shapes of a scene share one).
    pub position: Position,
    /// Its outline.
    pub kind: ShapeKind,
    /// Its fill.
    pub color: Color,
}

/// Light background colors, far from every [`Color`].
const BACKGROUNDS: [[u8; 3]; 5] = [
    [250, 250, 250],
    [222, 222, 222],
    [245, 238, 220],
    [220, 232, 245],
    [228, 242, 228],
];

/// The background behind the shapes.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Background {
    /// One color.
    Plain([u8; 3]),
    /// A linear gradient from the first color (top row) to the second (bottom row).
    Vertical([u8; 3], [u8; 3]),
    /// A linear gradient from the first color (left column) to the second (right column).
    Horizontal([u8; 3], [u8; 3]),
}

impl Background {
    fn random(rng: &mut SplitMix64) -> Self {
        let pair = rng.pick(&BACKGROUNDS, 2);
        let (a, b) = (pair[0], pair[1]);
        match rng.below(3) {
            0 => Self::Plain(a),
            1 => Self::Vertical(a, b),
            _ => Self::Horizontal(a, b),
        }
    }

    /// The color at pixel `(x, y)` of a `size` x `size` image.
    fn at(self, x: u32, y: u32, size: u32) -> [u8; 3] {
        match self {
            Self::Plain(c) => c,
            Self::Vertical(a, b) => blend(a, b, y, size),
            Self::Horizontal(a, b) => blend(a, b, x, size),
        }
    }
}

/// `a` at `t = 0` to `b` at `t = size - 1`, in integers (rounded down).
fn blend(a: [u8; 3], b: [u8; 3], t: u32, size: u32) -> [u8; 3] {
    let span = i64::from(size.max(2) - 1);
    let t = i64::from(t);
    let mix = |a: u8, b: u8| {
        let (a, b) = (i64::from(a), i64::from(b));
        (a + (b - a) * t / span) as u8
    };
    [mix(a[0], b[0]), mix(a[1], b[1]), mix(a[2], b[2])]
}

/// Everything one synthetic image shows.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Scene {
    /// What is behind the shapes.
    pub background: Background,
    /// 1 to 3 shapes, in [`Position::ALL`] order, with distinct positions, kinds and colors.
    pub shapes: Vec<Shape>,
}

impl Scene {
    /// A random scene: 1-3 shapes, each with its own position, kind and color.
    pub(crate) fn random(rng: &mut SplitMix64) -> Self {
        let n = 1 + rng.below(3);
        let positions = rng.pick(&Position::ALL, n);
        let kinds = rng.pick(&ShapeKind::ALL, n);
        let colors = rng.pick(&Color::ALL, n);
        let mut shapes: Vec<Shape> = (0..n)
            .map(|i| Shape {
                position: positions[i],
                kind: kinds[i],
                color: colors[i],
            })
            .collect();
        shapes.sort();
        Self {
            background: Background::random(rng),
            shapes,
        }
    }

    /// Draws the scene into a `size` x `size` image: background, then each shape with radius
    /// `size * 13 / 100` around its position's center, hard-edged.
    pub fn render(&self, size: u32) -> RgbImage {
        let r = i64::from(size * 13 / 100);
        let centers: Vec<(i64, i64)> = self
            .shapes
            .iter()
            .map(|s| {
                let (x, y) = s.position.center(size);
                (i64::from(x), i64::from(y))
            })
            .collect();
        let mut data = Vec::with_capacity(size as usize * size as usize * 3);
        for y in 0..size {
            for x in 0..size {
                let inside =
                    self.shapes.iter().zip(&centers).find(|(s, (cx, cy))| {
                        s.kind.contains(i64::from(x) - cx, i64::from(y) - cy, r)
                    });
                let pixel = match inside {
                    Some((s, _)) => s.color.rgb(),
                    None => self.background.at(x, y, size),
                };
                data.extend_from_slice(&pixel);
            }
        }
        RgbImage::from_raw(size, size, data).expect("size * size * 3 bytes were written")
    }
}
