use super::*;
use crate::mm::layout::{VMALLOC_END, VMALLOC_START};

#[test]
fn linear_map_and_image_are_direct_everything_else_bounces() {
    let img = 0x4020_0000;
    assert_eq!(
        place(PAGE_OFFSET + 0x4123_4000, 4096, img, 1 << 20),
        Placement::Direct(0x4123_4000)
    );
    assert_eq!(
        place(KIMAGE_VADDR + 0x10, 16, img, 1 << 20),
        Placement::Direct(img + 0x10)
    );
    // Past the image's end: not the image's.
    assert_eq!(
        place(KIMAGE_VADDR + (1 << 20) - 8, 16, img, 1 << 20),
        Placement::Bounce
    );
    // A vmalloc buffer (or a secondary CPU's stack) is not physically contiguous.
    assert_eq!(
        place(VMALLOC_START + 0x1000, 64, img, 1 << 20),
        Placement::Bounce
    );
    assert_eq!(place(VMALLOC_END - 64, 64, img, 1 << 20), Placement::Bounce);
    // A range that runs off the linear map's end, or wraps, bounces.
    assert_eq!(
        place(PAGE_OFFSET + LINEAR_MAP_SIZE - 8, 16, img, 1 << 20),
        Placement::Bounce
    );
    assert_eq!(place(usize::MAX - 3, 16, img, 1 << 20), Placement::Bounce);
}
