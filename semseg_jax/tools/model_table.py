"""The README's model table: every zoo config's parameter count beside its reference's, and
multiply-adds at its benchmark resolution. `python -m semseg_jax.tools.model_table` prints it
(tracing each model once at its config's crop size; nothing is compiled or run).

References: mmsegmentation 1.2.2 models built from its own configs (SyncBN as BN, auxiliary
head included), torchvision 0.28, or the paper; counted with PyTorch 2.13 (sum of numel over
model.parameters()). tests/models/test_zoo.py checks every count and this table's rows in
README.md.
"""

import dataclasses
import importlib

import ml_collections

from semseg_jax import models
from semseg_jax.tools import model_stats

DRN_SOURCE = ("fyu/drn segment.py DRNSeg (drn.py's trunk; its README's counts, e.g. 16.4M for "
              'D-22, are the ImageNet classifiers\', checked in tests/models/test_drn.py)')
DRN_EXPLANATION = ("-4,864: DRNSeg's frozen bilinear deconvolution (19 x 16 x 16, never trained) "
                   'is a constant here')
FC_DENSENET_SOURCE = ('SimJeg/FC-DenseNet (Lasagne) Network counted by formula in '
                      'tests/models/test_fc_densenet.py')
LW_REFINENET_SOURCE = ('DrSleep/light-weight-refinenet ResNetLW counted by formula in '
                       'tests/models/test_lw_refinenet.py')
BY_FORMULA = ('none published: torchvision ResNet trunk (+19,232 for the deep stem) + the head, '
              'counted by formula in tests/models/test_gcn_upernet_duc.py')
HF_SEGFORMER = 'HF transformers 5.23 SegformerForSemanticSegmentation at this size'
ENET_SOURCE = ('the Torch7 layer list counted by hand; the paper rounds to 0.37M (-1.7%: no layer '
               'is missing; the PyTorch port, 350,508, has no biases)')
LINKNET_SOURCE = ('e-lab/LinkNet (Torch7) models/model.lua counted by formula in '
                  'tests/models/test_linknet.py; paper 11.5M and 21.2 GFLOPs at 360x640 (ours: '
                  '9.7 GMACs there); the PyTorch port has no decoder biases (-992)')


@dataclasses.dataclass(frozen=True)
class Row:
  model: str  # As the table names it.
  config: str  # configs/<config>.py
  argument: str  # The config's argument ('' = its default).
  num_classes: int
  params: int  # Ours, at num_classes (checked by tests/models/test_zoo.py).
  reference: int | None  # The reference's count at num_classes, None where none exists.
  source: str  # Where the reference count comes from.
  explanation: str = ''  # Why ours differs from the reference, where it does.
  published_gmacs: tuple[float, tuple[int, int]] | None = None  # (GMACs, (h, w)) as published.


ROWS: tuple[Row, ...] = (
    Row('FCN R-50-D8', 'cityscapes_fcn', 'r50', 19, 49_497_734, 49_497_734,
        'mmseg fcn_r50-d8'),
    Row('FCN R-101-D8', 'cityscapes_fcn', 'r101', 19, 68_489_862, 68_489_862,
        'mmseg fcn_r101-d8'),
    Row('PSPNet R-50-D8', 'cityscapes_pspnet', 'r50', 19, 48_975_494, 48_975_494,
        'mmseg pspnet_r50-d8'),
    Row('PSPNet R-101-D8', 'cityscapes_pspnet', 'r101', 19, 67_967_622, 67_967_622,
        'mmseg pspnet_r101-d8'),
    Row('PSPNet MobileNetV2-D8', 'cityscapes_pspnet', 'mv2', 19, 13_620_262, 13_620_262,
        'mmseg mobilenet-v2-d8_pspnet'),
    Row('DeepLabV3 R-50-D8', 'cityscapes_deeplabv3', 'r50', 19, 68_113_030, 68_113_030,
        'mmseg deeplabv3_r50-d8'),
    Row('DeepLabV3 R-101-D8', 'cityscapes_deeplabv3', 'r101', 19, 87_105_158, 87_105_158,
        'mmseg deeplabv3_r101-d8'),
    Row('DeepLabV3+ R-50-D8', 'cityscapes_deeplabv3plus', 'r50', 19, 43_589_878, 43_589_878,
        'mmseg deeplabv3plus_r50-d8'),
    Row('DeepLabV3+ R-101-D8', 'cityscapes_deeplabv3plus', 'r101', 19, 62_582_006, 62_582_006,
        'mmseg deeplabv3plus_r101-d8'),
    Row('DeepLabV3+ MobileNetV2-D8', 'cityscapes_deeplabv3plus', 'mv2', 19, 15_244_374, 15_244_374,
        'mmseg mobilenet-v2-d8_deeplabv3plus'),
    Row('UPerNet R-50', 'cityscapes_upernet', 'r50', 19, 66_415_238, 66_415_238,
        'mmseg upernet_r50'),
    Row('UPerNet R-101', 'cityscapes_upernet', 'r101', 19, 85_407_366, 85_407_366,
        'mmseg upernet_r101'),
    Row('GCN R-50', 'cityscapes_gcn', 'r50', 19, 25_847_392, None,
        BY_FORMULA),
    Row('GCN R-101', 'cityscapes_gcn', 'r101', 19, 44_839_520, None,
        BY_FORMULA),
    Row('GCN R-152 (paper)', 'cityscapes_gcn', 'r152v1', 19, 60_463_936, None,
        BY_FORMULA),
    Row('DUC-HDC R-50', 'cityscapes_duc_hdc', 'r50', 19, 45_941_792, None,
        BY_FORMULA),
    Row('DUC-HDC R-101', 'cityscapes_duc_hdc', 'r101', 19, 64_933_920, None,
        BY_FORMULA),
    Row('FCN R-50-D8', 'ade20k_fcn', 'r50', 150, 49_598_604, 49_598_604,
        'mmseg fcn_r50-d8'),
    Row('FCN R-101-D8', 'ade20k_fcn', 'r101', 150, 68_590_732, 68_590_732,
        'mmseg fcn_r101-d8'),
    Row('PSPNet R-50-D8', 'ade20k_pspnet', 'r50', 150, 49_076_364, 49_076_364,
        'mmseg pspnet_r50-d8'),
    Row('PSPNet R-101-D8', 'ade20k_pspnet', 'r101', 150, 68_068_492, 68_068_492,
        'mmseg pspnet_r101-d8'),
    Row('PSPNet MobileNetV2-D8', 'ade20k_pspnet', 'mv2', 150, 13_721_132, 13_721_132,
        'mmseg mobilenet-v2-d8_pspnet'),
    Row('DeepLabV3 R-50-D8', 'ade20k_deeplabv3', 'r50', 150, 68_213_900, 68_213_900,
        'mmseg deeplabv3_r50-d8'),
    Row('DeepLabV3 R-101-D8', 'ade20k_deeplabv3', 'r101', 150, 87_206_028, 87_206_028,
        'mmseg deeplabv3_r101-d8'),
    Row('DeepLabV3+ R-50-D8', 'ade20k_deeplabv3plus', 'r50', 150, 43_690_748, 43_690_748,
        'mmseg deeplabv3plus_r50-d8'),
    Row('DeepLabV3+ R-101-D8', 'ade20k_deeplabv3plus', 'r101', 150, 62_682_876, 62_682_876,
        'mmseg deeplabv3plus_r101-d8'),
    Row('UPerNet R-50', 'ade20k_upernet', 'r50', 150, 66_516_108, 66_516_108,
        'mmseg upernet_r50'),
    Row('UPerNet R-101', 'ade20k_upernet', 'r101', 150, 85_508_236, 85_508_236,
        'mmseg upernet_r101'),
    Row('DeepLabV3+ R-50-D8', 'voc12aug_deeplabv3plus', 'r50', 21, 43_591_418, 43_591_418,
        'mmseg deeplabv3plus_r50-d8'),
    Row('DeepLabV3+ R-101-D8', 'voc12aug_deeplabv3plus', 'r101', 21, 62_583_546, 62_583_546,
        'mmseg deeplabv3plus_r101-d8'),
    Row('DeepLabV3 MobileNetV2 (TF/HF layout)', 'voc12aug_deeplabv3_mobilenet', '', 21,
        2_113_557, 2_525_717, 'transformers MobileNetV2ForSemanticSegmentation '
        '(google/deeplabv3_mobilenet_v2_1.0_513)',
        explanation="HF also builds the backbone's last 1x1 conv to 1280 channels (412,160), "
        "which its head never reads; overrides (('final_conv', True),) build it: 2,525,717"),
    Row('FCN-8s VGG16', 'voc12aug_fcn8s', '', 21, 134_489_759, 134_489_759,
        'Caffe voc-fcn8s, same layers counted in PyTorch'),
    Row('FCN-16s VGG16', 'voc12aug_fcn8s', '16s', 21, 134_815_994, 134_815_994,
        'Caffe voc-fcn16s, same layers counted in PyTorch'),
    Row('FCN-32s VGG16', 'voc12aug_fcn8s', '32s', 21, 136_152_917, 136_152_917,
        'Caffe voc-fcn32s, same layers counted in PyTorch'),
    Row('SegNet', 'camvid_segnet', '', 11, 29_449_355, 29_449_355,
        'Caffe segnet_train.prototxt counted layer by layer; paper: 29.5M'),
    Row('Bayesian SegNet', 'camvid_segnet', 'bayesian', 11, 29_449_355, 29_449_355,
        'as SegNet (dropout adds none)'),
    Row('ENet', 'camvid_enet', '', 11, 363_791, 363_791,
        ENET_SOURCE),
    Row('LinkNet', 'camvid_linknet', '', 11, 11_535_659, 11_535_659, LINKNET_SOURCE),
    Row('LinkNet R-34', 'camvid_linknet', 'r34', 11, 21_643_819, None,
        "none (the paper's network on torchvision's ResNet-34)"),
    Row('ERFNet', 'cityscapes_erfnet', '', 19, 2_064_191, 2_066_836,
        'Eromera/erfnet_pytorch Net(20) counted by formula in tests/models/test_erfnet.py',
        explanation="-2,645: not built, the encoder's 1x1 classifier of the code's first "
        'training stage (2,580) and the output for its void class (65)'),
    Row('ERFNet (mmseg)', 'cityscapes_erfnet', 'mmseg', 19, 2_084_095, 2_084_095,
        'mmseg erfnet_fcn (backbone + FCN head) counted by formula in '
        'tests/models/test_erfnet.py'),
    Row('CGNet M3N21', 'cityscapes_cgnet', '', 19, 496_306, 496_306,
        'wutianyiRosun/CGNet Context_Guided_Network(19, M=3, N=21) counted by formula in '
        'tests/models/test_cgnet.py; paper "0.5M"'),
    Row('CGNet M3N21 (mmseg)', 'cityscapes_cgnet', 'mmseg', 19, 496_325, 496_325,
        'mmseg cgnet (backbone + FCN head without convs: the classifier with its 19 biases) '
        'counted by formula in tests/models/test_cgnet.py'),
    Row('ICNet R-18-D8', 'cityscapes_icnet', 'r18', 19, 25_174_393, 25_174_393,
        'mmseg icnet_r18-d8 with its 2 label-guidance heads, counted by formula in '
        'tests/models/test_icnet.py'),
    Row('ICNet R-50-D8', 'cityscapes_icnet', 'r50', 19, 47_827_833, 47_827_833,
        'mmseg icnet_r50-d8 with its 2 label-guidance heads, counted by formula in '
        'tests/models/test_icnet.py'),
    Row('ICNet R-101-D8', 'cityscapes_icnet', 'r101', 19, 66_819_961, 66_819_961,
        'mmseg icnet_r101-d8 with its 2 label-guidance heads, counted by formula in '
        'tests/models/test_icnet.py'),
    Row('ESPNet', 'cityscapes_espnet', '', 19, 362_949, 364_569,
        'sacmehta/ESPNet test/Model.py ESPNet(20, p=2, q=8) = the published '
        'espnet_p_2_q_8.pth; paper 0.364M',
        explanation='-1,620: the void class\'s 20th channel in every decoder layer; '
        "overrides (('void_output', True),) build it: 364,569"),
    Row('ESPNet-C', 'cityscapes_espnet', 'c', 19, 349_193, 349_449,
        'sacmehta/ESPNet ESPNet_Encoder(20, p=2, q=8) = the published encoder '
        'espnet_p_2_q_8.pth', explanation="-256: the void class's classifier weights"),
    Row('EDANet', 'cityscapes_edanet', '', 19, 689_485, 689_485,
        'wpf535236337/pytorch_EDANet (the re-implementation the authors point to) counted by '
        'formula in tests/models/test_edanet.py; paper 0.68M (680,916 without the projection)'),
    Row('DRN-D-22', 'cityscapes_drn', 'd22', 19, 15_890_499, 15_895_363, DRN_SOURCE,
        explanation=DRN_EXPLANATION),
    Row('DRN-D-38', 'cityscapes_drn', 'd38', 19, 25_998_659, 26_003_523, DRN_SOURCE,
        explanation=DRN_EXPLANATION),
    Row('DRN-C-26', 'cityscapes_drn', 'c26', 19, 20_623_331, 20_628_195, DRN_SOURCE,
        explanation=DRN_EXPLANATION),
    Row('DRN-C-42', 'cityscapes_drn', 'c42', 19, 30_731_491, 30_736_355, DRN_SOURCE,
        explanation=DRN_EXPLANATION),
    Row('DRN-D-105', 'cityscapes_drn', 'd105', 19, 54_298_051, 54_302_915, DRN_SOURCE,
        explanation=DRN_EXPLANATION),
    Row('FC-DenseNet103', 'camvid_fc_densenet', '', 11, 9_322_091, 9_322_091, FC_DENSENET_SOURCE
        + '; paper 9.4M (9,425,163 with the BN statistics, which Lasagne\'s count includes)'),
    Row('FC-DenseNet67', 'camvid_fc_densenet', '67', 11, 3_463_243, 3_463_243,
        FC_DENSENET_SOURCE + '; paper 3.5M (3,502,923 with the BN statistics)'),
    Row('FC-DenseNet56', 'camvid_fc_densenet', '56', 11, 1_376_795, 1_376_795,
        FC_DENSENET_SOURCE + '; paper 1.5M, the code 1,397,963 with the BN statistics '
        '(unexplained)'),
    Row('DeconvNet', 'voc12aug_deconvnet', '', 21, 251_805_653, 251_805_653,
        'HyeonwooNoh/DeconvNet Caffe DeconvNet_inference_deploy.prototxt counted by formula in '
        'tests/models/test_deconvnet.py; paper 252M'),
    Row('RefineNet-101', 'voc12aug_refinenet', '', 21, 118_052_437, 118_052_437,
        "DrSleep/refinenet-pytorch RefineNet (the paper's MatConvNet network) counted on the "
        'module (sum of numel) and by formula in tests/models/test_refinenet.py'),
    Row('Light-Weight RefineNet-50', 'voc12aug_lw_refinenet', 'r50', 21, 27_357_525, 27_357_525,
        LW_REFINENET_SOURCE + '; README 27M', published_gmacs=(33, (468, 625))),
    Row('Light-Weight RefineNet-101', 'voc12aug_lw_refinenet', 'r101', 21, 46_349_653,
        46_349_653, LW_REFINENET_SOURCE + '; README 46M', published_gmacs=(52, (468, 625))),
    Row('Light-Weight RefineNet-152', 'voc12aug_lw_refinenet', 'r152', 21, 61_993_301,
        61_993_301, LW_REFINENET_SOURCE + '; README 62M', published_gmacs=(71, (468, 625))),
    Row('U-Net', 'camvid_unet', 'paper', 11, 31_032_395, 31_032_395,
        'paper Fig. 1 counted at 3 input channels; ~31.0M usually quoted'),
    Row('U-Net + BN', 'camvid_unet', '', 11, 31_038_283, None,
        'none (the paper has no BN)'),
    Row('SegFormer-B0', 'ade20k_segformer', 'b0', 150, 3_752_694, 3_752_694,
        f'{HF_SEGFORMER}; paper 3.8M'),
    Row('SegFormer-B1', 'ade20k_segformer', 'b1', 150, 13_715_798, 13_715_798,
        f'{HF_SEGFORMER}; paper 13.7M'),
    Row('SegFormer-B2', 'ade20k_segformer', 'b2', 150, 27_461_974, 27_461_974,
        f'{HF_SEGFORMER}; paper 27.5M'),
    Row('SegFormer-B3', 'ade20k_segformer', 'b3', 150, 47_337_814, 47_337_814,
        f'{HF_SEGFORMER}; paper 47.3M'),
    Row('SegFormer-B4', 'ade20k_segformer', 'b4', 150, 64_108_374, 64_108_374,
        f'{HF_SEGFORMER}; paper 64.1M'),
    Row('SegFormer-B5', 'ade20k_segformer', 'b5', 150, 84_708_694, 84_708_694,
        f'{HF_SEGFORMER}; paper 84.7M'),
    Row('SegNeXt-T', 'ade20k_segnext', 't', 150, 4_263_414, 4_263_414,
        'mmseg MSCAN + LightHamHead; paper 4.3M', published_gmacs=(6.6, (512, 512))),
    Row('SegNeXt-S', 'ade20k_segnext', 's', 150, 13_932_886, 13_932_886,
        'mmseg MSCAN + LightHamHead; paper 13.9M', published_gmacs=(15.9, (512, 512))),
    Row('SegNeXt-B', 'ade20k_segnext', 'b', 150, 27_636_310, 27_636_310,
        'mmseg MSCAN + LightHamHead; paper 27.6M', published_gmacs=(34.9, (512, 512))),
    Row('SegNeXt-L', 'ade20k_segnext', 'l', 150, 48_926_550, 48_926_550,
        'mmseg MSCAN + LightHamHead; paper 48.9M', published_gmacs=(70.0, (512, 512))),
    Row('TopFormer-T', 'ade20k_topformer', 't', 150, 1_389_654, 1_389_654,
        'official hustvl/TopFormer module; paper 1.4M', published_gmacs=(0.6, (512, 512))),
    Row('TopFormer-S', 'ade20k_topformer', 's', 150, 3_034_662, 3_034_662,
        'official hustvl/TopFormer module; paper 3.1M', published_gmacs=(1.2, (512, 512))),
    Row('TopFormer-B', 'ade20k_topformer', 'b', 150, 5_062_646, 5_062_646,
        'official hustvl/TopFormer module; paper 5.1M', published_gmacs=(1.8, (512, 512))),
    Row('TopFormer-B (head 128)', 'cityscapes_topformer', 'b', 19, 4_839_667, 4_839_667,
        'official topformer_base_1024x512_80k_2x8city'),
    Row('STDC1-Seg', 'cityscapes_stdc', 'stdc1', 19, 8_572_954, 8_573_019,
        'mmseg stdc1 with its aux and detail heads; paper 8.44M is the ImageNet STDC1 classifier',
        explanation='-65: our detail head has 1 output channel, as the paper and the official '
        'code; mmseg 1.x gives it 2'),
    Row('STDC2-Seg', 'cityscapes_stdc', 'stdc2', 19, 12_603_418, 12_603_483,
        'mmseg stdc2 with its aux and detail heads; paper 12.5M is the ImageNet STDC2 classifier',
        explanation='-65: 1-channel detail head, as STDC1'),
    Row('RegSeg', 'cityscapes_regseg', '', 19, 3_334_951, 3_334_951,
        'official RolandGao/RegSeg exp48_decoder26; paper 3.34M',
        published_gmacs=(39.1, (1024, 2048))),
    Row('SFNet R-18', 'cityscapes_sfnet', 'r18', 19, 12_869_715, 12_869_715,
        'official lxtGH/SFSegNets module; paper 12.87M', published_gmacs=(243.87, (1024, 2048))),
    Row('SFNet R-50', 'cityscapes_sfnet', 'r50', 19, 31_325_139, 31_325_139,
        'official lxtGH/SFSegNets module'),
    Row('SFNet R-101', 'cityscapes_sfnet', 'r101', 19, 50_317_267, 50_317_267,
        'official lxtGH/SFSegNets module'),
    Row('BiSeNet V1 R-18', 'cityscapes_bisenetv1', 'r18', 19, 13_425_721, 13_425_721,
        'mmseg bisenetv1_r18-d32 with its 2 aux heads'),
    Row('BiSeNet V1 R-50', 'cityscapes_bisenetv1', 'r50', 19, 59_243_385, 59_243_385,
        'mmseg bisenetv1_r50-d32 with its 2 aux heads'),
    Row('BiSeNet V2', 'cityscapes_bisenetv2', '', 19, 14_804_255, 14_804_255,
        'mmseg bisenetv2 with its 4 booster heads (3,358,883 without them; paper 3.4M)'),
)


def load_config(config: str, argument: str) -> ml_collections.ConfigDict:
  module = importlib.import_module(f'configs.{config}')
  return module.get_config(argument) if argument else module.get_config()


def row_macs(row: Row) -> tuple[int, tuple[int, int]]:
  """Multiply-adds of one image at the published resolution where one is given, else at the
  config's crop size; and that size."""
  config = load_config(row.config, row.argument)
  hw = row.published_gmacs[1] if row.published_gmacs else tuple(config.augment.crop_size)
  return model_stats.inference_macs(models.build_model(config.model, row.num_classes), hw), hw


def markdown_rows(with_macs: bool = True) -> list[str]:
  """The table's rows (header included), as README.md holds them."""
  lines = ['| model | config | classes | params (ours) | params (reference) | reference | '
           'GMACs at crop or as published |',
           '|---|---|---|---|---|---|---|']
  for row in ROWS:
    argument = f':{row.argument}' if row.argument else ''
    reference = f'{row.reference:,}' if row.reference else 'none'
    source = row.source + (f' ({row.explanation})' if row.explanation else '')
    line = (f'| {row.model} | `{row.config}.py{argument}` | {row.num_classes} | '
            f'{row.params:,} | {reference} | {source} |')
    if with_macs:
      macs, hw = row_macs(row)
      published = f'; published {row.published_gmacs[0]}' if row.published_gmacs else ''
      line += f' {macs / 1e9:.1f} ({hw[0]}x{hw[1]}{published}) |'
    lines.append(line)
  return lines


if __name__ == '__main__':
  print('\n'.join(markdown_rows()))
