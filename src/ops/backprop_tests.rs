//! Checks of the vendored candle-core's gradient accumulation (vendor/candle-core,
//! GENOLENS-PATCH.md): a tensor's first gradient contribution is stored as it is rather than
//! added to a zero-filled buffer. The values must be those of the unpatched rule in every way a
//! contribution can arrive (alone, repeated, as a transposed view, as a narrow view of a larger
//! gradient), and the stored gradients must be usable by any op (contiguous).

use candle_core::{Storage, Tensor, Var};

use crate::ops::kernels::test_support::{max_difference, normal};

/// Address of a CPU tensor's first element: equal addresses mean shared storage.
fn address(x: &Tensor) -> usize {
    let (storage, layout) = x.storage_and_layout();
    match &*storage {
        Storage::Cpu(candle_core::CpuStorage::F32(data)) => {
            data[layout.start_offset()..].as_ptr() as usize
        }
        _ => panic!("expected f32 CPU storage"),
    }
}

#[test]
fn first_contributions_are_stored_without_a_zero_filled_copy() {
    let a = Var::from_tensor(&normal(&[3, 5], 1, 1.0)).unwrap();
    let b = Var::from_tensor(&normal(&[3, 5], 2, 1.0)).unwrap();
    let weight = normal(&[3, 5], 3, 1.0);
    let loss = ((a.as_tensor() + b.as_tensor()).unwrap() * &weight)
        .unwrap()
        .sum_all()
        .unwrap();
    let grads = loss.backward().unwrap();
    let (ga, gb) = (
        grads.get(a.as_tensor()).unwrap(),
        grads.get(b.as_tensor()).unwrap(),
    );
    assert_eq!(max_difference(ga, &weight), 0.0);
    assert_eq!(max_difference(gb, &weight), 0.0);
    // The sum's gradient reached both addends as one tensor: candle 0.11 as published would have
    // added it to two zero-filled buffers, giving two copies. (Fails if the [patch] is dropped.)
    assert_eq!(address(ga), address(gb));
}

#[test]
fn repeated_viewed_and_narrowed_contributions_sum_as_before() {
    let x = Var::from_tensor(&normal(&[4, 6], 4, 1.0)).unwrap();
    let w = Var::from_tensor(&normal(&[6, 4], 5, 1.0)).unwrap();
    let c = normal(&[4, 6], 6, 1.0);
    let d = normal(&[8, 6], 7, 1.0);
    let xt = x.as_tensor();
    // x twice in one product (x ∘ x), x again through w's transpose (w's only contribution is a
    // transposed view), and x inside a concatenation (a narrow view of the cat's gradient).
    let square = (xt * xt).unwrap();
    let through_w = (w.as_tensor().t().unwrap() * &c).unwrap();
    let cat = Tensor::cat(&[xt, &through_w], 0).unwrap();
    let loss = ((square * &c).unwrap().sum_all().unwrap() + (cat * &d).unwrap().sum_all().unwrap())
        .unwrap();
    let grads = loss.backward().unwrap();
    // d/dx = 2 x ∘ c + d[..4]; d/dw = (c ∘ d[4..])ᵀ.
    let dx = ((xt * &c).unwrap() * 2.0).unwrap() + d.narrow(0, 0, 4).unwrap();
    let dw = (&c * d.narrow(0, 4, 4).unwrap()).unwrap().t().unwrap();
    let (gx, gw) = (grads.get(xt).unwrap(), grads.get(w.as_tensor()).unwrap());
    assert!(max_difference(gx, &dx.unwrap()) < 1e-6);
    assert!(max_difference(gw, &dw) < 1e-6);
    assert!(gx.is_contiguous() && gw.is_contiguous());
    assert_eq!(gw.dims(), &[6, 4]);
}
