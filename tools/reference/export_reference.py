"""transformers 5 on a folder vlm's `export` wrote: logits and greedy `generate` tokens.

    .venv5/bin/python export_reference.py EXPORTED_DIR IMAGE OUT.safetensors

EXPORTED_DIR is the LlavaForConditionalGeneration folder of the small LoRA checkpoint that
`tests/export_llava.rs` builds from the committed fixtures (`regenerate.sh` has it written by
that test's ignored `write_exported_folder`). The folder is loaded the way a user would, with
`AutoModelForImageTextToText` and `AutoProcessor`; the processor renders the exported chat
template, expands the image token and preprocesses IMAGE. OUT holds, for the Rust test:
`input_ids` and `pixel_values` (the processor's), `last_logits` (the whole last row),
`logits` at every position for the columns `logit_columns` (every 997th id: the full
[seq, 151k] table would be tens of MB) and `generated` (greedy, up to 8 new tokens).
"""

import sys

import torch
from PIL import Image
from safetensors.torch import save_file
from transformers import AutoModelForImageTextToText, AutoProcessor, LlavaForConditionalGeneration

QUESTION = "\nWhat is in the picture?"
MAX_NEW_TOKENS = 8
COLUMN_STRIDE = 997


def main(folder: str, image_path: str, out: str) -> None:
    model = AutoModelForImageTextToText.from_pretrained(folder, dtype=torch.float32).eval()
    assert isinstance(model, LlavaForConditionalGeneration), type(model)
    processor = AutoProcessor.from_pretrained(folder)
    messages = [
        {"role": "user", "content": [{"type": "image"}, {"type": "text", "text": QUESTION}]}
    ]
    text = processor.apply_chat_template(messages, add_generation_prompt=True)
    image = Image.open(image_path).convert("RGB")
    inputs = processor(images=image, text=text, return_tensors="pt")
    with torch.no_grad():
        logits = model(**inputs).logits[0]
        generated = model.generate(**inputs, max_new_tokens=MAX_NEW_TOKENS, do_sample=False)
    columns = torch.arange(0, logits.shape[-1], COLUMN_STRIDE)
    prompt_len = inputs["input_ids"].shape[1]
    save_file(
        {
            "input_ids": inputs["input_ids"][0].to(torch.int64).contiguous(),
            "pixel_values": inputs["pixel_values"][0].to(torch.float32).contiguous(),
            "last_logits": logits[-1].contiguous(),
            "logit_columns": columns.to(torch.int64),
            "logits": logits[:, columns].contiguous(),
            "generated": generated[0, prompt_len:].to(torch.int64).contiguous(),
        },
        out,
    )
    print(f"{out}: {prompt_len} prompt tokens, generated {generated[0, prompt_len:].tolist()}")


if __name__ == "__main__":
    main(*sys.argv[1:])
