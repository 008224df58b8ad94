//! The quickstart's recipe: random-weight starting folders that load as the tiny model and
//! repeat byte for byte, the place classes of stage 1, and the scores as the quickstart
//! prints them.

use std::collections::HashMap;
use std::path::Path;

use vlm_data::{Conversation, Role, Turn};
use vlm_hf::PreprocessorConfig;
use vlm_qwen::QwenModel;
use vlm_sample::place_pretraining::place_classes;
use vlm_sample::questions::questions_in;
use vlm_sample::sample::{Background, Color, Pixels, Position, Scene, Shape, ShapeKind};
use vlm_sample::score::{frequent_answers, HeldOutScore, TrainingScore};
use vlm_sample::tiny_vlm::{
    preprocessing, write_random_qwen2, write_random_siglip, TinyVlmSizes, SELECTION,
};
use vlm_testkit::{device, TestBackend};
use vlm_vision::{SiglipVisionTower, VisionEncoder};

fn small_sizes() -> TinyVlmSizes {
    TinyVlmSizes {
        patch: 16,
        vit_dim: 32,
        vit_layers: 1,
        vit_heads: 2,
        shuffle: 2,
        hidden: 32,
        intermediate: 64,
        layers: 1,
        heads: 4,
        kv_heads: 2,
    }
}

/// Both random folders, written into `dir/llm` and `dir/vision`.
fn write_folders(dir: &Path, sizes: &TinyVlmSizes) {
    write_random_qwen2::<TestBackend>(&dir.join("llm"), 40, sizes, &device()).unwrap();
    write_random_siglip::<TestBackend>(&dir.join("vision"), sizes, &device()).unwrap();
}

#[test]
fn random_folders_load_as_the_tiny_model_and_repeat_byte_for_byte() {
    let sizes = small_sizes();
    let (first, second) = (tempfile::tempdir().unwrap(), tempfile::tempdir().unwrap());
    write_folders(first.path(), &sizes);
    write_folders(second.path(), &sizes);
    for file in [
        "llm/config.json",
        "llm/model.safetensors",
        "vision/config.json",
        "vision/model.safetensors",
        "vision/preprocessor_config.json",
    ] {
        let read = |dir: &Path| std::fs::read(dir.join(file)).unwrap();
        assert_eq!(read(first.path()), read(second.path()), "{file} differs");
    }

    let dev = device();
    let llm = QwenModel::<TestBackend>::load(first.path().join("llm"), &dev).unwrap();
    assert_eq!(llm.config().vocab_size, 40);
    assert_eq!(llm.config().hidden_size, sizes.hidden);
    let vision_dir = first.path().join("vision");
    let vision = SiglipVisionTower::<TestBackend>::load(&vision_dir, SELECTION, &dev).unwrap();
    assert_eq!(vision.output_dim(), sizes.vit_dim);
    assert_eq!(vision.tokens_per_image(), 16);
    assert_eq!(sizes.tokens_per_image(), 4);
    let saved = PreprocessorConfig::from_file(vision_dir.join(PreprocessorConfig::FILE_NAME));
    assert_eq!(saved.unwrap(), preprocessing());
}

#[test]
fn place_classes_name_the_colour_and_outline_at_each_place() {
    let scene = Scene {
        background: Background::Plain([255; 3]),
        shapes: vec![
            Shape {
                position: Position::Top,
                kind: ShapeKind::Circle,
                color: Color::Red,
            },
            Shape {
                position: Position::Bottom,
                kind: ShapeKind::Triangle,
                color: Color::Blue,
            },
        ],
    };
    // 1 + colour * 3 + outline; 0 where nothing is.
    assert_eq!(place_classes(&scene), [1, 0, 0, 0, 1 + 2 * 3 + 2]);
}

fn turn(role: Role, text: &str) -> Turn {
    Turn {
        role,
        text: text.into(),
    }
}

fn conversation() -> (Conversation, Pixels) {
    let conv = Conversation {
        id: "c0".into(),
        image: Some("images/c0.png".into()),
        turns: vec![
            turn(Role::User, "<image>\nHow many shapes are there?"),
            turn(Role::Assistant, "Two."),
            turn(Role::User, "What color is the circle?"),
            turn(Role::Assistant, "Red."),
        ],
    };
    (conv, Pixels::from(vec![0.5; 3]))
}

#[test]
fn scores_print_as_the_quickstart_shows_them() {
    let data = [conversation()];
    let questions = questions_in(&data);
    let prior: HashMap<_, _> = frequent_answers(data.iter().map(|(conv, _)| conv));
    let answers = ["Two.".to_string(), "Blue.".to_string()];
    let blanked = ["One.".to_string(), "Red.".to_string()];
    let held_out = HeldOutScore {
        questions: &questions,
        answers: &answers,
        blanked: &blanked,
        prior: &prior,
    };
    assert_eq!(
        held_out.to_string(),
        "held-out exact match: 1/2 = 50.0%\n\
         with the image blanked: 1/2 = 50.0% (uniform guessing among each question's possible \
         answers: 29.2%; each question's most frequent training answer: 100.0%)\n  \
         How many       1/1   (blanked 0)\n  \
         What color     0/1   (blanked 1)\n  \
         Which shape    0/0   (blanked 0)\n  \
         Where          0/0   (blanked 0)\n"
    );
    let training = TrainingScore {
        probe: &questions,
        answers: &answers,
    };
    assert_eq!(
        training.to_string(),
        "training conversations: 1/2 right\n  \
         training How many       1/1  \n  \
         training What color     0/1  \n  \
         training Which shape    0/0  \n  \
         training Where          0/0  \n"
    );
}
