use core::str::Utf8Error;

/// The Error type for the zlink crate.
#[derive(Debug)]
#[non_exhaustive]
pub enum Error {
    /// An error occurred while reading from the socket.
    SocketRead,
    /// An error occurred while writing to the socket.
    SocketWrite,
    /// Buffer overflow.
    BufferOverflow,
    /// Invalid UTF-8 data.
    InvalidUtf8(Utf8Error),
    /// An invalid Varlink name.
    InvalidName(crate::names::Error),
    /// Error serializing or deserializing to/from JSON.
    Json(serde_json::Error),
    /// An I/O error.
    #[cfg(feature = "std")]
    Io(std::io::Error),
    /// Unexpected end of file/stream.
    UnexpectedEof,
    /// An error occurred while parsing IDL.
    #[cfg(feature = "idl-parse")]
    IdlParse(alloc::string::String),
    /// Missing required parameters.
    MissingParameters,
    /// A general service error.
    VarlinkService(crate::varlink_service::OwnedError),
    /// An error reply that the client doesn't know.
    ///
    /// The error couldn't be deserialized as one of the `org.varlink.service` interface or of the
    /// error type the reply was received as, e.g. because the service is newer than the client.
    /// Contains the name of the error.
    UnknownErrorReply(alloc::string::String),
    /// Empty chain creation attempt.
    EmptyChain,
}

/// The Result type for the zlink crate.
pub type Result<T> = core::result::Result<T, Error>;

impl core::error::Error for Error {
    fn source(&self) -> Option<&(dyn core::error::Error + 'static)> {
        match self {
            Error::Json(e) => Some(e),
            #[cfg(feature = "std")]
            Error::Io(e) => Some(e),
            Error::InvalidUtf8(e) => Some(e),
            Error::InvalidName(e) => Some(e),
            #[cfg(feature = "idl-parse")]
            Error::IdlParse(_) => None,
            Error::VarlinkService(e) => Some(e),
            _ => None,
        }
    }
}

impl From<serde_json::Error> for Error {
    fn from(e: serde_json::Error) -> Self {
        Error::Json(e)
    }
}

impl From<crate::names::Error> for Error {
    fn from(e: crate::names::Error) -> Self {
        Error::InvalidName(e)
    }
}

impl From<core::convert::Infallible> for Error {
    fn from(e: core::convert::Infallible) -> Self {
        match e {}
    }
}

#[cfg(feature = "std")]
impl From<std::io::Error> for Error {
    fn from(e: std::io::Error) -> Self {
        Error::Io(e)
    }
}

#[cfg(feature = "idl-parse")]
impl From<zlink_idl::parse::Error> for Error {
    fn from(e: zlink_idl::parse::Error) -> Self {
        use alloc::string::ToString;

        Error::IdlParse(e.to_string())
    }
}

impl core::fmt::Display for Error {
    fn fmt(&self, f: &mut core::fmt::Formatter<'_>) -> core::fmt::Result {
        match self {
            Error::SocketRead => write!(f, "An error occurred while reading from the socket"),
            Error::SocketWrite => write!(f, "An error occurred while writing to the socket"),
            Error::BufferOverflow => write!(f, "Buffer overflow"),
            Error::InvalidUtf8(e) => write!(f, "Invalid UTF-8 data: {e}"),
            Error::InvalidName(e) => write!(f, "{e}"),
            Error::Json(e) => write!(f, "Error serializing or deserializing to/from JSON: {e}"),
            #[cfg(feature = "std")]
            Error::Io(e) => write!(f, "I/O error: {e}"),
            Error::UnexpectedEof => write!(f, "Unexpected end of file/stream"),
            #[cfg(feature = "idl-parse")]
            Error::IdlParse(e) => write!(f, "IDL parse error: {e}"),
            Error::MissingParameters => write!(f, "Missing required parameters"),
            Error::VarlinkService(e) => write!(f, "{e}"),
            Error::UnknownErrorReply(name) => write!(f, "Unknown error reply: {name}"),
            Error::EmptyChain => write!(f, "Cannot create a chain from an empty iterator or slice"),
        }
    }
}

#[cfg(feature = "defmt")]
impl defmt::Format for Error {
    fn format(&self, fmt: defmt::Formatter<'_>) {
        match self {
            Error::SocketRead => {
                defmt::write!(fmt, "An error occurred while reading from the socket")
            }
            Error::SocketWrite => {
                defmt::write!(fmt, "An error occurred while writing to the socket")
            }
            Error::BufferOverflow => defmt::write!(fmt, "Buffer overflow"),
            Error::InvalidUtf8(_) => defmt::write!(fmt, "Invalid UTF-8 data"),
            Error::InvalidName(_) => defmt::write!(fmt, "Invalid Varlink name"),
            Error::Json(_) => {
                defmt::write!(fmt, "Error serializing or deserializing to/from JSON")
            }
            #[cfg(feature = "std")]
            Error::Io(_) => defmt::write!(fmt, "I/O error"),
            Error::UnexpectedEof => defmt::write!(fmt, "Unexpected end of file/stream"),
            #[cfg(feature = "idl-parse")]
            Error::IdlParse(_) => defmt::write!(fmt, "IDL parse error"),
            Error::MissingParameters => defmt::write!(fmt, "Missing required parameters"),
            Error::VarlinkService(_) => defmt::write!(fmt, "Varlink service error"),
            Error::UnknownErrorReply(_) => defmt::write!(fmt, "Unknown error reply"),
            Error::EmptyChain => {
                defmt::write!(fmt, "Cannot create a chain from an empty iterator or slice")
            }
        }
    }
}
