//! Collation: right padding for training, left padding for generation, image stacking, the
//! errors, and the conversion to Burn tensors (Flex CPU backend).

use vlm_data::{collate, BatchError, EncodedSample, Padding, Sample, IGNORE_INDEX};
use vlm_image::PixelValues;
use vlm_testkit::{device, TestBackend};

const PAD: u32 = 151643;
const IMG: u32 = 151655;

fn encoded(
    id: &str,
    ids: &[u32],
    labels: &[i64],
    image: Option<std::ops::Range<usize>>,
) -> EncodedSample {
    EncodedSample {
        id: id.into(),
        input_ids: ids.to_vec(),
        labels: labels.to_vec(),
        image_span: image,
        truncated: false,
    }
}

fn pixels(value: f32) -> PixelValues {
    PixelValues {
        data: vec![value; 3 * 2 * 2],
        shape: [3, 2, 2],
    }
}

fn samples() -> Vec<Sample> {
    vec![
        Sample {
            encoded: encoded(
                "a",
                &[1, IMG, IMG, 2, 3],
                &[-100, -100, -100, 2, 3],
                Some(1..3),
            ),
            pixel_values: Some(pixels(0.5)),
        },
        Sample {
            encoded: encoded("b", &[4, 5, 6], &[-100, 5, 6], None),
            pixel_values: None,
        },
        Sample {
            encoded: encoded("c", &[IMG, 7], &[-100, 7], Some(0..1)),
            pixel_values: Some(pixels(-1.0)),
        },
    ]
}

#[test]
fn right_padding_for_training() {
    let batch = collate(samples(), PAD, Padding::Right).unwrap();
    let p = i64::from(PAD);
    let img = i64::from(IMG);
    assert_eq!(batch.ids, ["a", "b", "c"]);
    assert_eq!((batch.batch_size, batch.seq_len), (3, 5));
    #[rustfmt::skip]
    assert_eq!(batch.input_ids, vec![
        1, img, img, 2, 3,
        4, 5, 6, p, p,
        img, 7, p, p, p,
    ]);
    #[rustfmt::skip]
    assert_eq!(batch.attention_mask, vec![
        1, 1, 1, 1, 1,
        1, 1, 1, 0, 0,
        1, 1, 0, 0, 0,
    ]);
    let x = IGNORE_INDEX;
    #[rustfmt::skip]
    assert_eq!(batch.labels, vec![
        x, x, x, 2, 3,
        x, 5, 6, x, x,
        x, 7, x, x, x,
    ]);
    assert_eq!(batch.has_image, [true, false, true]);
    assert_eq!(batch.n_images(), 2);
    assert_eq!(batch.image_shape, Some([3, 2, 2]));
    let mut expected = vec![0.5; 12];
    expected.extend(vec![-1.0; 12]);
    assert_eq!(batch.pixel_values, expected);
}

#[test]
fn left_padding_for_generation() {
    let batch = collate(samples(), PAD, Padding::Left).unwrap();
    let p = i64::from(PAD);
    let img = i64::from(IMG);
    #[rustfmt::skip]
    assert_eq!(batch.input_ids, vec![
        1, img, img, 2, 3,
        p, p, 4, 5, 6,
        p, p, p, img, 7,
    ]);
    #[rustfmt::skip]
    assert_eq!(batch.attention_mask, vec![
        1, 1, 1, 1, 1,
        0, 0, 1, 1, 1,
        0, 0, 0, 1, 1,
    ]);
    assert_eq!(
        &batch.labels[5..10],
        &[IGNORE_INDEX, IGNORE_INDEX, IGNORE_INDEX, 5, 6]
    );
}

#[test]
fn collation_errors() {
    assert_eq!(collate(vec![], PAD, Padding::Right), Err(BatchError::Empty));

    let mut s = samples();
    s[0].pixel_values = None;
    let err = collate(s, PAD, Padding::Right).unwrap_err();
    assert!(
        matches!(&err, BatchError::ImageMismatch { id, .. } if id == "a"),
        "{err}"
    );

    let mut s = samples();
    s[1].pixel_values = Some(pixels(0.0));
    assert!(matches!(
        collate(s, PAD, Padding::Right),
        Err(BatchError::ImageMismatch { .. })
    ));

    let mut s = samples();
    s[2].pixel_values = Some(PixelValues {
        data: vec![0.0; 3 * 4 * 4],
        shape: [3, 4, 4],
    });
    let err = collate(s, PAD, Padding::Right).unwrap_err();
    assert_eq!(
        err,
        BatchError::ImageShape {
            id: "c".into(),
            expected: [3, 2, 2],
            found: [3, 4, 4]
        }
    );
}

#[test]
fn to_tensors_keeps_shapes_and_values() {
    let batch = collate(samples(), PAD, Padding::Right).unwrap();
    let t = batch.to_tensors::<TestBackend>(&device());
    assert_eq!(t.input_ids.dims(), [3, 5]);
    assert_eq!(t.attention_mask.dims(), [3, 5]);
    assert_eq!(t.labels.dims(), [3, 5]);
    let ints = |x: burn::tensor::Tensor<TestBackend, 2, burn::tensor::Int>| -> Vec<i64> {
        x.into_data().convert::<i64>().to_vec().unwrap()
    };
    assert_eq!(ints(t.input_ids), batch.input_ids);
    assert_eq!(ints(t.attention_mask), batch.attention_mask);
    assert_eq!(ints(t.labels), batch.labels);
    let pixels = t.pixel_values.expect("two images");
    assert_eq!(pixels.dims(), [2, 3, 2, 2]);
    assert_eq!(
        pixels.into_data().to_vec::<f32>().unwrap(),
        batch.pixel_values
    );

    let text_only = collate(
        samples().into_iter().skip(1).take(1).collect(),
        PAD,
        Padding::Right,
    );
    let t = text_only.unwrap().to_tensors::<TestBackend>(&device());
    assert!(t.pixel_values.is_none());
}
