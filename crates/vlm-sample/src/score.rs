//! The quickstart's scores: exact match (the answer's exact string, as the recorded scores
//! count it) overall and per question kind of the sample dataset, against what an image-blind
//! model could reach. Each report prints as the quickstart shows it.

use std::collections::HashMap;
use std::fmt;

use vlm_data::Conversation;
use vlm_model::Question;

use crate::questions::Asked;

/// The question kinds of the sample dataset, by their first words, with the number of
/// possible answers of each.
const KINDS: [(&str, usize); 4] = [
    ("How many", 3),
    ("What color", 4),
    ("Which shape", 3),
    ("Where", 5),
];

/// The held-out exact match, with the image blanked, and the image-blind baselines: uniform
/// guessing and each question's most frequent training answer (`prior`, from
/// [`frequent_answers`]). One line each, then one per question kind.
pub struct HeldOutScore<'a> {
    /// The questions asked.
    pub questions: &'a [Asked],
    /// The model's answers, in question order.
    pub answers: &'a [String],
    /// Its answers with every image blanked.
    pub blanked: &'a [String],
    /// The most frequent training answer of each question text.
    pub prior: &'a HashMap<String, String>,
}

impl fmt::Display for HeldOutScore<'_> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let questions = self.questions;
        let count = questions.len();
        let percent = |n: usize| 100.0 * n as f64 / count as f64;
        let chance = questions.iter().map(|q| chance(&q.question)).sum::<f64>() / count as f64;
        let guesses: Vec<String> = questions
            .iter()
            .map(|q| {
                let guess = self.prior.get(&q.question.text());
                guess.cloned().unwrap_or_default()
            })
            .collect();
        let right = correct(questions, self.answers);
        let blank_right = correct(questions, self.blanked);
        writeln!(
            f,
            "held-out exact match: {right}/{count} = {:.1}%",
            percent(right)
        )?;
        writeln!(
            f,
            "with the image blanked: {blank_right}/{count} = {:.1}% (uniform guessing among \
             each question's possible answers: {:.1}%; each question's most frequent training \
             answer: {:.1}%)",
            percent(blank_right),
            100.0 * chance,
            percent(correct(questions, &guesses))
        )?;
        by_kind(f, "", questions, self.answers, Some(self.blanked))
    }
}

/// The score on training conversations asked like the held-out ones (telling under- from
/// over-fitting): one line, then one per question kind.
pub struct TrainingScore<'a> {
    /// The training questions asked.
    pub probe: &'a [Asked],
    /// The model's answers, in question order.
    pub answers: &'a [String],
}

impl fmt::Display for TrainingScore<'_> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let right = correct(self.probe, self.answers);
        writeln!(
            f,
            "training conversations: {right}/{} right",
            self.probe.len()
        )?;
        by_kind(f, "training ", self.probe, self.answers, None)
    }
}

/// How many of `answers` are exactly their question's reference.
fn correct<'a>(asked: impl IntoIterator<Item = &'a Asked>, answers: &[String]) -> usize {
    asked
        .into_iter()
        .zip(answers)
        .filter(|(a, answer)| **answer == a.question.reference)
        .count()
}

/// Probability that a uniform guess among the question's possible answers is right.
fn chance(question: &Question) -> f64 {
    let text = question.text();
    let choices = KINDS
        .iter()
        .find(|(kind, _)| text.starts_with(kind))
        .map_or(5, |(_, choices)| *choices);
    1.0 / choices as f64
}

/// One line per question kind: right answers, and right answers with the image blanked.
fn by_kind(
    f: &mut fmt::Formatter<'_>,
    label: &str,
    questions: &[Asked],
    answers: &[String],
    blanked: Option<&[String]>,
) -> fmt::Result {
    for (kind, _) in KINDS {
        let of_kind = |q: &&Asked| q.question.text().starts_with(kind);
        let right_of_kind = |answers: &[String]| {
            questions
                .iter()
                .zip(answers)
                .filter(|(q, a)| of_kind(q) && **a == q.question.reference)
                .count()
        };
        let asked = questions.iter().filter(of_kind).count();
        let blank = blanked
            .map(|b| format!(" (blanked {})", right_of_kind(b)))
            .unwrap_or_default();
        writeln!(
            f,
            "  {label}{kind:<12} {:>3}/{asked:<3}{blank}",
            right_of_kind(answers)
        )?;
    }
    Ok(())
}

/// The most frequent answer to each question text of the training conversations (ties: the
/// first in alphabetical order): the best an image-blind model could learn.
pub fn frequent_answers<'a>(
    train: impl Iterator<Item = &'a Conversation>,
) -> HashMap<String, String> {
    let mut counts: HashMap<String, HashMap<String, usize>> = HashMap::new();
    for question in train.flat_map(Question::all_of) {
        let answers = counts.entry(question.text()).or_default();
        *answers.entry(question.reference).or_default() += 1;
    }
    counts
        .into_iter()
        .filter_map(|(question, answers)| {
            let best = answers
                .into_iter()
                .max_by(|a, b| a.1.cmp(&b.1).then_with(|| b.0.cmp(&a.0)))?;
            Some((question, best.0))
        })
        .collect()
}
