use crate::{Error, inference, weights};
use candle_core::{DType, Device, Tensor};
use candle_nn::VarBuilder;
use candle_transformers::models::bert::{BertModel, Config};

pub(crate) struct Model(BertModel);

impl Model {
    pub fn load() -> Result<Self, Error> {
        let tensors = weights::load()?
            .into_iter()
            .map(|(name, weight)| {
                Tensor::from_vec(weight.data, weight.shape, &Device::Cpu)
                    .map(|tensor| (name, tensor))
                    .map_err(inference)
            })
            .collect::<Result<_, _>>()?;
        let config: Config =
            serde_json::from_str(include_str!("../assets/config.json")).map_err(inference)?;
        BertModel::load(
            VarBuilder::from_tensors(tensors, DType::F32, &Device::Cpu),
            &config,
        )
        .map(Self)
        .map_err(inference)
    }

    /// The pooled (unnormalized) vectors of `rows` inputs of one length, their ids, types and
    /// masks laid end to end.
    pub fn pooled_rows(
        &self,
        ids: &[u32],
        types: &[u32],
        mask: &[u32],
        rows: usize,
    ) -> Result<Vec<Vec<f32>>, Error> {
        if rows == 0
            || ids.is_empty()
            || ids.len() % rows != 0
            || types.len() != ids.len()
            || mask.len() != ids.len()
        {
            return Err(inference("invalid token dimensions"));
        }
        self.forward(ids, types, mask, rows).map_err(inference)
    }

    #[cfg(test)]
    pub fn pooled(&self, ids: &[u32], types: &[u32], mask: &[u32]) -> Result<Vec<f32>, Error> {
        self.pooled_rows(ids, types, mask, 1)?
            .pop()
            .ok_or_else(|| inference("no row"))
    }

    fn forward(
        &self,
        ids: &[u32],
        types: &[u32],
        mask: &[u32],
        rows: usize,
    ) -> candle_core::Result<Vec<Vec<f32>>> {
        let shape = (rows, ids.len() / rows);
        let ids = Tensor::from_slice(ids, shape, &Device::Cpu)?;
        let types = Tensor::from_slice(types, shape, &Device::Cpu)?;
        let mask = Tensor::from_slice(mask, shape, &Device::Cpu)?;
        let hidden = self.0.forward(&ids, &types, Some(&mask))?;
        hidden
            .broadcast_mul(&mask.to_dtype(DType::F32)?.unsqueeze(2)?)?
            .sum(1)?
            .to_vec2::<f32>()
    }
}
