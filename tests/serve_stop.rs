//! The `serve` example's handling of OpenAI `stop` strings on streamed text.

#[path = "../examples/serve/stop.rs"]
mod stop;

use stop::StopText;

#[test]
fn text_ends_before_the_first_stop_string_even_across_chunks() {
    let mut stop = StopText::new(vec!["END".into(), "\n\n".into()]);
    assert_eq!(stop.push("one E"), "one ");
    assert_eq!(stop.push("N"), "");
    assert_eq!(stop.push("Dless"), "");
    assert!(stop.stopped());
    assert_eq!(stop.push("more"), "");
    assert_eq!(stop.finish(), "");
}

#[test]
fn text_that_only_looks_like_a_stop_is_released() {
    let mut stop = StopText::new(vec!["END".into()]);
    assert_eq!(stop.push("an E"), "an ");
    assert_eq!(stop.push("gg"), "Egg");
    assert_eq!(stop.push("é E"), "é ");
    assert_eq!(stop.finish(), "E");
    assert!(!stop.stopped());

    let mut none = StopText::new(Vec::new());
    assert_eq!(none.push("a b"), "a b");
    assert_eq!(none.finish(), "");
}

#[test]
fn the_earliest_of_several_stops_wins() {
    let mut stop = StopText::new(vec!["cd".into(), "b".into()]);
    assert_eq!(stop.push("abcd"), "a");
    assert!(stop.stopped());
}
