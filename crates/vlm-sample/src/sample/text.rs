//! The words about a [`Scene`]: English questions with one-word answers (LLaVA format) and
//! Chinese captions (AI Challenger format). One phrasing per question kind, so that a tiny
//! model can learn the task.

use vlm_rng::SplitMix64;

use super::scene::{Scene, Shape};

/// A question about a scene that only the image answers.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Question {
    /// "How many shapes are there?"
    Count,
    /// "What color is the circle?"
    ColorOf(Shape),
    /// "Which shape is red?"
    KindOf(Shape),
    /// "Where is the red circle?"
    PositionOf(Shape),
}

impl Question {
    fn text(self) -> String {
        match self {
            Self::Count => "How many shapes are there?".to_owned(),
            Self::ColorOf(s) => format!("What color is the {}?", s.kind.english()),
            Self::KindOf(s) => format!("Which shape is {}?", s.color.english()),
            Self::PositionOf(s) => {
                format!("Where is the {} {}?", s.color.english(), s.kind.english())
            }
        }
    }

    fn answer(self, scene: &Scene) -> String {
        let word = match self {
            Self::Count => ["One", "Two", "Three"][scene.shapes.len() - 1],
            Self::ColorOf(s) => s.color.english(),
            Self::KindOf(s) => s.kind.english(),
            Self::PositionOf(s) => s.position.english(),
        };
        format!("{}.", capitalised(word))
    }
}

fn capitalised(word: &str) -> String {
    let mut chars = word.chars();
    chars
        .next()
        .map(|c| c.to_uppercase().chain(chars).collect())
        .unwrap_or_default()
}

/// Question-answer pairs about `scene`: the count, and one question of a random kind about each
/// shape, in a random order.
pub(crate) fn questions(scene: &Scene, rng: &mut SplitMix64) -> Vec<(String, String)> {
    let mut all = vec![Question::Count];
    for &shape in &scene.shapes {
        let kinds = [
            Question::ColorOf(shape),
            Question::KindOf(shape),
            Question::PositionOf(shape),
        ];
        all.push(kinds[rng.below(kinds.len())]);
    }
    let n = all.len();
    rng.pick(&all, n)
        .into_iter()
        .map(|q| (q.text(), q.answer(scene)))
        .collect()
}

/// Three Chinese captions of `scene`, e.g. for one red circle on the left:
/// `图中有一个红色的圆形。`, `左边有一个红色的圆形。`, `红色的圆形在左边。`.
pub(crate) fn captions(scene: &Scene) -> Vec<String> {
    let shapes = &scene.shapes;
    let listed: Vec<String> = shapes
        .iter()
        .map(|s| format!("一个{}的{}", s.color.chinese(), s.kind.chinese()))
        .collect();
    let first = match listed.as_slice() {
        [one] => format!("图中有{one}。"),
        _ => format!(
            "图中有{}个形状：{}。",
            ["一", "两", "三"][shapes.len() - 1],
            joined_with_and(&listed)
        ),
    };
    let where_first: Vec<String> = shapes
        .iter()
        .map(|s| {
            format!(
                "{}有一个{}的{}",
                s.position.chinese(),
                s.color.chinese(),
                s.kind.chinese()
            )
        })
        .collect();
    let shape_first: Vec<String> = shapes
        .iter()
        .map(|s| {
            format!(
                "{}的{}在{}",
                s.color.chinese(),
                s.kind.chinese(),
                s.position.chinese()
            )
        })
        .collect();
    vec![
        first,
        format!("{}。", where_first.join("，")),
        format!("{}。", shape_first.join("，")),
    ]
}

/// `a`, `a和b`, `a、b和c`.
fn joined_with_and(items: &[String]) -> String {
    match items {
        [] => String::new(),
        [one] => one.clone(),
        [init @ .., last] => format!("{}和{last}", init.join("、")),
    }
}

#[cfg(test)]
mod tests {
    use super::super::scene::{Background, Color, Position, ShapeKind};
    use super::*;

    fn scene(shapes: &[(Position, ShapeKind, Color)]) -> Scene {
        Scene {
            background: Background::Plain([250, 250, 250]),
            shapes: shapes
                .iter()
                .map(|&(position, kind, color)| Shape {
                    position,
                    kind,
                    color,
                })
                .collect(),
        }
    }

    #[test]
    fn captions_read_naturally() {
        let one = scene(&[(Position::Left, ShapeKind::Circle, Color::Red)]);
        assert_eq!(
            captions(&one),
            [
                "图中有一个红色的圆形。",
                "左边有一个红色的圆形。",
                "红色的圆形在左边。"
            ]
        );
        let three = scene(&[
            (Position::Top, ShapeKind::Square, Color::Blue),
            (Position::Center, ShapeKind::Circle, Color::Red),
            (Position::Bottom, ShapeKind::Triangle, Color::Yellow),
        ]);
        assert_eq!(
            captions(&three)[0],
            "图中有三个形状：一个蓝色的正方形、一个红色的圆形和一个黄色的三角形。"
        );
        assert_eq!(
            captions(&three)[1],
            "上边有一个蓝色的正方形，中间有一个红色的圆形，下边有一个黄色的三角形。"
        );
    }

    #[test]
    fn answers_are_one_capitalised_word() {
        let s = scene(&[
            (Position::Left, ShapeKind::Circle, Color::Red),
            (Position::Right, ShapeKind::Triangle, Color::Green),
        ]);
        let shape = s.shapes[1];
        assert_eq!(Question::Count.answer(&s), "Two.");
        assert_eq!(
            Question::ColorOf(shape).text(),
            "What color is the triangle?"
        );
        assert_eq!(Question::ColorOf(shape).answer(&s), "Green.");
        assert_eq!(Question::KindOf(shape).text(), "Which shape is green?");
        assert_eq!(Question::KindOf(shape).answer(&s), "Triangle.");
        assert_eq!(
            Question::PositionOf(shape).text(),
            "Where is the green triangle?"
        );
        assert_eq!(Question::PositionOf(shape).answer(&s), "Right.");
    }
}
