"""Text: masked and uniform-noise discrete diffusion language models (seed papers 7, 19, 29, 31).

``run = interpolant.text.train_text("markov-char", {"steps": 200}, "runs/markov")`` trains a
masked-diffusion model; ``run.model(tokens, t)`` is its denoiser, (B, L) ids in [0, V] ->
(B, L, V) logits over the V clean tokens (id V is the mask, see ``text.base``).
``sample_text(run.model, masked_canvas(8, 32, V), method="first_hitting", seed=0)`` samples it
(``text.loop``: one loop, one spec ``TextSampler``, the methods of ``text.samplers``).
"""

# --- tokenizers, languages, corpora, models, losses, training (tokenize, pcfg, corpora, models,
# losses, train) ---
from .corpora import records as records
from .corpora import render_json as render_json
from .corpora import render_text as render_text
from .corpora import stdlib_docs as stdlib_docs
from .losses import TextObjective as TextObjective
from .losses import elbo_nll as elbo_nll
from .losses import masked_nelbo as masked_nelbo
from .losses import uniform_nelbo as uniform_nelbo
from .models import CausalTransformer as CausalTransformer
from .models import DiffusionTransformer as DiffusionTransformer
from .models import build_text_model as build_text_model
from .pcfg import PCFG as PCFG
from .pcfg import PCFGLanguage as PCFGLanguage
from .pcfg import toy_grammar as toy_grammar
from .tokenize import Tokenizer as Tokenizer
from .train import PRESETS as PRESETS
from .train import TextRun as TextRun
from .train import load_text_run as load_text_run
from .train import train_text as train_text

# isort: split
# --- exact languages, the sampling loop and its samplers, EDLM, EDLM-NCE, S3, metrics (markov,
# regular, loop, samplers, edlm, edlm_nce, s3, metrics) ---
from . import metrics as metrics
from .edlm import EDLM as EDLM
from .edlm import AREnergy as AREnergy
from .edlm_nce import EnergyTransformer as EnergyTransformer
from .edlm_nce import NCEEnergy as NCEEnergy
from .edlm_nce import NCEObjective as NCEObjective
from .edlm_nce import nce_loss as nce_loss
from .edlm_nce import train_nce_energy as train_nce_energy
from .loop import TextSample as TextSample
from .loop import TextSampler as TextSampler
from .loop import masked_canvas as masked_canvas
from .loop import sample_text as sample_text
from .markov import MarkovLanguage as MarkovLanguage
from .markov import UnigramLanguage as UnigramLanguage
from .regular import Automaton as Automaton
from .regular import RegularLanguage as RegularLanguage
from .s3 import Scaffold as Scaffold
from .s3 import build_scaffold as build_scaffold
from .s3 import sample_json as sample_json
from .s3 import schema_errors as schema_errors
from .samplers import Ancestral as Ancestral
from .samplers import Confidence as Confidence
from .samplers import FirstHitting as FirstHitting
