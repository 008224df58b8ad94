//! `generate_until`: generation that the token callback can end early (what a server needs
//! when a client goes away or a stop string appears), on the llava fixture.

mod common;

use std::ops::ControlFlow;

use common::Llava;
use vlm_qwen::GenerationConfig;

#[test]
fn breaking_in_the_callback_ends_generation_with_the_tokens_so_far() {
    let llava = Llava::load("llava");
    let config = GenerationConfig::greedy(6);
    let full = llava
        .model
        .generate(llava.batch(), &config, |_| {})
        .expect("generate");
    let mut calls = 0;
    let cut = llava
        .model
        .generate_until(llava.batch(), &config, |_| {
            calls += 1;
            match calls {
                2 => ControlFlow::Break(()),
                _ => ControlFlow::Continue(()),
            }
        })
        .expect("generate_until");
    assert_eq!(calls, 2, "no step after the break");
    let expected: Vec<Vec<u32>> = full.iter().map(|row| row[..2].to_vec()).collect();
    assert_eq!(cut, expected);
    assert!(full.iter().all(|row| row.len() == 6));
}
