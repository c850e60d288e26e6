//! HTTP content negotiation: choosing a media type from an `Accept` header.

/// A media type the server can send, and what it stands for.
#[derive(Debug, Clone, Copy)]
pub struct Offer<T: 'static> {
    /// The media type, lower case, without parameters.
    pub media_type: &'static str,
    /// What to send when it is chosen.
    pub value: T,
}

impl<T> Offer<T> {
    /// An offer of `value` as `media_type`.
    pub const fn new(media_type: &'static str, value: T) -> Self {
        Self { media_type, value }
    }
}

/// The media types of `offers`, for error messages.
pub fn media_types<T>(offers: &[Offer<T>]) -> Vec<&'static str> {
    offers.iter().map(|o| o.media_type).collect()
}

/// The offer the client prefers: highest quality, then most specific match, then the
/// server's order. No header (or an empty one) takes the first offer; None when nothing
/// offered is acceptable.
pub fn choose<'a, T>(accept: Option<&str>, offers: &'a [Offer<T>]) -> Option<&'a Offer<T>> {
    let accept = match accept.map(str::trim) {
        None | Some("") => return offers.first(),
        Some(accept) => accept,
    };
    let ranges: Vec<(String, f32)> = accept
        .split(',')
        .filter_map(|range| {
            let mut parts = range.split(';');
            let media = parts.next()?.trim().to_ascii_lowercase();
            if media.is_empty() {
                return None;
            }
            let mut quality = 1.0f32;
            for param in parts {
                if let Some((key, value)) = param.split_once('=')
                    && key.trim().eq_ignore_ascii_case("q")
                {
                    quality = value.trim().parse().unwrap_or(0.0);
                }
            }
            Some((media, quality))
        })
        .collect();
    let mut best: Option<(f32, u8, usize)> = None;
    for (index, offer) in offers.iter().enumerate() {
        // The most specific range matching this offer decides its quality.
        let mut matched: Option<(u8, f32)> = None;
        for (media, quality) in &ranges {
            let specificity = if media == offer.media_type {
                3
            } else if media.ends_with("/*")
                && offer.media_type.starts_with(&media[..media.len() - 1])
            {
                2
            } else if media == "*/*" {
                1
            } else {
                continue;
            };
            if matched.is_none_or(|(s, _)| specificity > s) {
                matched = Some((specificity, *quality));
            }
        }
        if let Some((specificity, quality)) = matched
            && quality > 0.0
        {
            let candidate = (quality, specificity, index);
            let better = match best {
                None => true,
                Some((q, s, _)) => quality > q || (quality == q && specificity > s),
            };
            if better {
                best = Some(candidate);
            }
        }
    }
    best.map(|(_, _, index)| &offers[index])
}

#[cfg(test)]
mod tests {
    use super::*;

    const OFFERS: &[Offer<u8>] = &[
        Offer::new("text/turtle", 0),
        Offer::new("application/ld+json", 1),
        Offer::new("application/n-triples", 2),
    ];

    fn pick(accept: Option<&str>) -> Option<u8> {
        choose(accept, OFFERS).map(|o| o.value)
    }

    #[test]
    fn no_header_takes_the_default() {
        assert_eq!(pick(None), Some(0));
        assert_eq!(pick(Some("")), Some(0));
        assert_eq!(pick(Some("*/*")), Some(0));
    }

    #[test]
    fn exact_and_quality() {
        assert_eq!(pick(Some("application/ld+json")), Some(1));
        assert_eq!(
            pick(Some("text/turtle;q=0.5, application/n-triples")),
            Some(2)
        );
        assert_eq!(pick(Some("application/*")), Some(1));
        assert_eq!(pick(Some("APPLICATION/N-TRIPLES")), Some(2));
        assert_eq!(
            pick(Some("application/rdf+xml;q=0.9, text/turtle")),
            Some(0)
        );
        assert_eq!(
            pick(Some("text/turtle ; Q = 0.2, application/n-triples;q=0.3")),
            Some(2)
        );
    }

    #[test]
    fn the_most_specific_range_decides() {
        // application/* would give n-triples 0.5; its own range gives it 0.1.
        assert_eq!(
            pick(Some(
                "application/*;q=0.5, application/ld+json;q=0.1, text/turtle;q=0.2"
            )),
            Some(2)
        );
        assert_eq!(pick(Some("*/*;q=0.1, application/ld+json;q=0.1")), Some(1));
        assert_eq!(pick(Some("*/*, text/turtle;q=0")), Some(1));
    }

    #[test]
    fn browsers_get_the_default_and_refusals_are_none() {
        assert_eq!(
            pick(Some(
                "text/html,application/xhtml+xml,application/xml;q=0.9,*/*;q=0.8"
            )),
            Some(0)
        );
        assert_eq!(pick(Some("text/html")), None);
        assert_eq!(pick(Some("text/turtle;q=0")), None);
    }
}
